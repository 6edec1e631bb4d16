"""The one error a manifest can raise: ManifestError, one line "FILE:LINE: path: message"."""

from __future__ import annotations

from marketplace.core.errors import InvalidArgument


class ManifestError(InvalidArgument):
    """A manifest that cannot be used. str() is one line: 'FILE:LINE: path: message'."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        line: int = 1,
        source: str = "<manifest>",
        errors: tuple[ManifestError, ...] = (),
    ) -> None:
        self.message = one_line(message[:MAX_MESSAGE])[:MAX_MESSAGE]
        self.path = one_line(path[:MAX_PATH])  # a key may hold a newline: still one line
        self.line = line
        self.source = one_line(source[:MAX_PATH])
        self.errors: tuple[ManifestError, ...] = errors or (self,)
        super().__init__(self.location_message)

    @property
    def location_message(self) -> str:
        where = f"{self.source}:{self.line}: "
        return where + (f"{self.path}: " if self.path else "") + self.message


def one_line(text: str) -> str:
    return " ".join(str(text).split())


# A message quotes values through limits.shown() (cut before formatting); these caps are the
# last guard, so that no error, whatever it quotes, grows past a line or two.
MAX_MESSAGE = 400
MAX_PATH = 200
MAX_ERRORS = 20  # problems reported at once (the first ones, in file order)
MAX_WARNINGS = 50  # warnings kept (each names its line, which costs a walk of the document)
