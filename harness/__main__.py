import sys

try:
    from harness._cli import main
except KeyboardInterrupt:  # Ctrl-C before main() can catch it (importing it: ~13 ms)
    print("harness: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
