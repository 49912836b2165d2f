"""Read character vectors out of an R package's lazy-load data base (data/Rdata.rdx + .rdb).

r-cran-janeaustenr ships Austen's novels this way. R is not needed to read them: the index is a
gzip-compressed serialized R list, each object a zlib-compressed serialized R value, and the
serialization format (XDR, versions 2 and 3) is small enough to read here for the types a data
package uses.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Any

_NILVALUE, _EMPTYENV, _BASEENV, _GLOBALENV, _UNBOUND, _MISSINGARG, _BASENAMESPACE = 254, 242, 241, 253, 252, 251, 250
_REF, _NAMESPACE, _PACKAGE, _PERSIST = 255, 249, 248, 247
_SYM, _LIST, _CLOS, _ENV, _PROM, _LANG, _CHAR = 1, 2, 3, 4, 5, 6, 9
_LGL, _INT, _REAL, _CPLX, _STR, _DOT, _VEC, _EXPR, _ALTREP, _ATTRLIST, _ATTRLANG = 10, 13, 14, 15, 16, 17, 19, 20, 238, 239, 240
_NA_INT = -(2**31)


class RDataError(ValueError):
    """The data base holds something this reader does not understand."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        if data[:2] != b"X\n":
            raise RDataError("only XDR-serialized R data is supported")
        self.data, self.pos, self.refs = data, 2, []
        version = self.int()
        self.int(), self.int()
        if version == 3:
            encoding_length = self.int()
            self.pos += encoding_length

    def int(self) -> int:
        (value,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return value

    def length(self) -> int:
        value = self.int()
        if value == -1:
            high, low = self.int(), self.int()
            value = (high << 32) + low
        return value

    def item(self) -> Any:
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if kind in (_NILVALUE, _EMPTYENV, _BASEENV, _GLOBALENV, _UNBOUND, _MISSINGARG, _BASENAMESPACE):
            return None
        if kind == _REF:
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind == _SYM:
            name = self.item()
            self.refs.append(name)
            return name
        if kind in (_NAMESPACE, _PACKAGE, _PERSIST):
            self.int()
            value = [self.item() for _ in range(self.int())]
            self.refs.append(value)
            return value
        if kind == _ENV:
            slot: dict[str, Any] = {}
            self.refs.append(slot)
            self.int()
            slot.update(enclos=self.item(), frame=self.item(), hashtab=self.item(), attrib=self.item())
            return slot
        if kind in (_LIST, _LANG, _CLOS, _PROM, _DOT, _ATTRLIST, _ATTRLANG):
            attributes = self.item() if has_attr else None
            tag = self.item() if has_tag else None
            head = self.item()
            tail = self.item()
            del attributes
            return [(tag, head)] + (tail if isinstance(tail, list) else [])
        if kind == _CHAR:
            size = self.int()
            if size == -1:
                return None
            text = self.data[self.pos : self.pos + size].decode("utf-8", errors="replace")
            self.pos += size
            return text
        if kind in (_LGL, _INT):
            count = self.length()
            values = list(struct.unpack_from(f">{count}i", self.data, self.pos))
            self.pos += 4 * count
            value: Any = [None if v == _NA_INT else v for v in values]
        elif kind == _REAL:
            count = self.length()
            value = list(struct.unpack_from(f">{count}d", self.data, self.pos))
            self.pos += 8 * count
        elif kind == _CPLX:
            count = self.length()
            value = list(struct.unpack_from(f">{2 * count}d", self.data, self.pos))
            self.pos += 16 * count
        elif kind in (_STR, _VEC, _EXPR):
            value = [self.item() for _ in range(self.length())]
        elif kind == _ALTREP:
            raise RDataError("ALTREP objects are not supported")
        else:
            raise RDataError(f"unsupported R object type {kind}")
        if has_attr:
            attributes = dict(self.item())
            names = attributes.get("names")
            if kind == _VEC and names is not None:
                return dict(zip(names, value))
        return value


def _unserialize(data: bytes) -> Any:
    return _Reader(data).item()


def read_lazyload_db(rdx: Path) -> dict[str, Any]:
    """Every object of the lazy-load data base `rdx` (the .rdb next to it holds the values)."""
    index = _unserialize(gzip.decompress(Path(rdx).read_bytes()))
    variables = index["variables"]
    blob = Path(rdx).with_suffix(".rdb").read_bytes()
    objects: dict[str, Any] = {}
    for name, (offset, size) in sorted(variables.items()):
        chunk = blob[int(offset) : int(offset) + int(size)]
        # 4-byte big-endian uncompressed length, then (for the default compression) a zlib stream.
        objects[name] = _unserialize(zlib.decompress(chunk[4:]))
    return objects
