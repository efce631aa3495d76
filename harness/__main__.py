import contextlib
import sys

try:
    from harness._cli import main
except KeyboardInterrupt:  # Ctrl-C before main() can catch it (importing it: ~13 ms)
    if sys.stderr is not None:  # (as harness._cli.tell)
        with contextlib.suppress(OSError, ValueError):
            print("harness: interrupted", file=sys.stderr, flush=True)
    sys.exit(130)

sys.exit(main())
