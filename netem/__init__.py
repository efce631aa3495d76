"""Network emulation: hosts in network namespaces, shaped links, partitions.

Usable on its own; imports nothing from `harness`.
"""

from netem._shape import IDENTITY, LinkShape, ShapeError

__all__ = ["IDENTITY", "LinkShape", "ShapeError"]
