"""`gpumarket shell` and `gpumarket cp`: a shell in a lease's container, and files in and out.

Both travel over one signed, two-way gRPC stream (Tenant.Shell) that the marketplace relays to
the provider's agent over a stream the agent opened (marketplace/server/relay.py), so the
provider needs no inbound port. Only the lease's tenant may open one.

shell: with a terminal on stdin and stdout, an interactive TTY: the terminal goes raw (every key,
Ctrl-C included, goes to the container's process), its size follows the window (SIGWINCH), and
it is restored on exit. Otherwise the command runs with stdin piped in, stdout and stderr apart,
and `gpumarket shell` exits with the command's exit code.

cp: one regular file, either way, with a progress bar on a terminal; a file over --max-size is
refused before a byte moves (and the count is enforced while it streams, too). A download
lands in a temporary file beside its destination and is renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import tempfile
import termios
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, BinaryIO

import click

from marketplace.api.client import ShellCall, TenantClient
from marketplace.api.v1 import market_pb2 as pb
from marketplace.cli.ids import Ids
from marketplace.cli.tenant import Connection, market_options
from marketplace.core import limits, units
from marketplace.core.errors import FailedPrecondition, InvalidArgument, MarketError
from marketplace.terminal import friendly_errors, json_option, print_json

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

STDIN_CHUNK = 64 * 1024
COPY_CHUNK = 1024 * 1024  # bytes per frame of a copied file (the most the market takes)
DEFAULT_MAX_SIZE = "16Gi"
EXIT_NO_STATUS = 255  # the session ended without the command's exit status


class _DashDash(click.Command):
    """Keeps what follows `--` apart (the command to run), so SERVICE stays optional."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["shell.command"] = args[cut + 1 :]
            args = args[:cut]
        return super().parse_args(ctx, args)


@click.command(cls=_DashDash)
@click.argument("lease")
@click.argument("service", required=False, default="")
@click.option(
    "--tty/--no-tty",
    "use_tty",
    default=None,
    help="Force a TTY on or off (default: on when stdin and stdout are a terminal).",
)
@market_options
@click.pass_context
def shell(
    ctx: click.Context, lease: str, service: str, use_tty: bool | None, conn: Connection
) -> None:
    """Open a shell in LEASE's container, or run a command there: `shell LEASE [SERVICE]
    [-- CMD...]`.

    \b
      gpumarket shell D3/1/1/gm1...                 interactive /bin/sh
      gpumarket shell D3/1/1/gm1... web -- ls /data run one command, exit with its status
      echo hi | gpumarket shell D3/... -- cat       stdin goes to the command

    SERVICE is needed when the lease runs more than one service. The session is relayed by
    the marketplace; the provider may have switched shell access off.
    """
    command: list[str] = ctx.meta.get("shell.command", [])
    interactive = use_tty if use_tty is not None else sys.stdin.isatty() and sys.stdout.isatty()
    try:
        client = conn.tenant()
        leased = Ids(client).lease(lease, open_only=True)
        code = _run_shell(client, leased, service, command, interactive)
    except MarketError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(code)


def _run_shell(
    client: TenantClient, lease: str, service: str, command: list[str], interactive: bool
) -> int:
    rows, cols = _terminal_size() if interactive else (0, 0)
    opening = pb.ShellOpen(
        lease_id=lease, service=service, command=command, tty=interactive, rows=rows, cols=cols
    )
    frames: queue.Queue[pb.ShellFrame | None] = queue.Queue()
    call = client.shell(opening, _drain(frames))
    try:
        if interactive:
            return _interactive(call, frames)
        _start_stdin_pump(frames, sys.stdin.buffer)
        return _print_output(call)
    finally:
        frames.put(None)  # ends the request stream gRPC's thread is reading
        call.cancel()


def _drain(frames: queue.Queue[pb.ShellFrame | None]) -> Iterator[pb.ShellFrame]:
    while (frame := frames.get()) is not None:
        yield frame


def _start_stdin_pump(frames: queue.Queue[pb.ShellFrame | None], source: BinaryIO) -> None:
    """Stdin to the command until EOF, then say so (a daemon thread: it may block forever)."""

    def pump() -> None:
        fd = source.fileno()
        with contextlib.suppress(OSError):
            while data := os.read(fd, STDIN_CHUNK):
                frames.put(pb.ShellFrame(stdin=data))
        frames.put(pb.ShellFrame(stdin_closed=True))

    threading.Thread(target=pump, name="stdin", daemon=True).start()


def _print_output(call: ShellCall) -> int:
    stdout, stderr = sys.stdout.buffer, sys.stderr.buffer
    for frame in call:
        if frame.stdout:
            stdout.write(frame.stdout)
            stdout.flush()
        if frame.stderr:
            stderr.write(frame.stderr)
            stderr.flush()
        if frame.error:
            raise FailedPrecondition(frame.error)
        if frame.exited:
            return frame.exit_code
    raise MarketError("the session ended without the command's exit status")


def _interactive(call: ShellCall, frames: queue.Queue[pb.ShellFrame | None]) -> int:
    """Raw terminal in, output out, the window's size followed; the terminal restored after."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)

    def resized(signum: int, frame: FrameType | None) -> None:
        rows, cols = _terminal_size()
        frames.put(pb.ShellFrame(rows=rows, cols=cols))

    previous = signal.signal(signal.SIGWINCH, resized)
    try:
        tty.setraw(fd)
        _start_stdin_pump(frames, sys.stdin.buffer)
        out = sys.stdout.fileno()
        for frame in call:
            if frame.stdout:
                _write_all(out, frame.stdout)
            if frame.error:
                raise FailedPrecondition(frame.error)
            if frame.exited:
                return frame.exit_code
        return EXIT_NO_STATUS
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _terminal_size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except OSError:
        return 24, 80
    return size.lines, size.columns


# --- cp -----------------------------------------------------------------------------------------


def split_remote(arg: str) -> tuple[str, str] | None:
    """(lease, path) for LEASE:PATH, None for a local path. As with scp, a local path with a
    colon is written ./a:b (or absolute)."""
    lease, colon, path = arg.partition(":")
    if not colon or not lease or lease.startswith((".", "/", "~")):
        return None
    return lease, path


@click.command()
@click.argument("source")
@click.argument("destination")
@click.option("--service", default="", help="The service's container, when the lease has several.")
@click.option(
    "--max-size",
    default=DEFAULT_MAX_SIZE,
    envvar="GPUMARKET_CP_MAX_SIZE",
    show_default=True,
    help="Refuse a file larger than this (e.g. 500Mi, 2Gi) [env GPUMARKET_CP_MAX_SIZE].",
)
@market_options
@json_option
@friendly_errors
def cp(
    source: str, destination: str, service: str, max_size: str, conn: Connection, as_json: bool
) -> None:
    """Copy one file into or out of a lease's container.

    \b
      gpumarket cp D3/1/1/gm1...:/data/model.bin ./model.bin    download
      gpumarket cp ./input.tar D3/1/1/gm1...:/data/             upload (into /data/input.tar)

    One of SOURCE and DESTINATION is LEASE:PATH. The copy is relayed by the marketplace over
    the session stream (no port on the provider); the provider may cap the size too.
    """
    try:
        most = units.parse_size(max_size)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-size") from None
    if most <= 0:
        raise click.BadParameter("must be positive", param_hint="--max-size")
    remote_source, remote_destination = split_remote(source), split_remote(destination)
    if (remote_source is None) == (remote_destination is None):
        raise click.UsageError("one of SOURCE and DESTINATION must be LEASE:PATH, the other local")
    started = time.monotonic()
    client = conn.tenant()
    if remote_source is not None:
        lease, path = remote_source
        leased = Ids(client).lease(lease, open_only=True)
        copied = download(client, leased, service, path, Path(destination), most)
    else:
        assert remote_destination is not None
        lease, path = remote_destination
        leased = Ids(client).lease(lease, open_only=True)
        copied = upload(client, Path(source), leased, service, path, most)
    seconds = time.monotonic() - started
    if as_json:
        print_json(
            {"source": source, "destination": destination, "bytes": copied, "seconds": seconds}
        )
    else:
        rate = copied / max(seconds, 1e-6) / 1e6
        click.echo(f"copied {copied:,} bytes in {seconds:.1f} s ({rate:.1f} MB/s)", err=True)


def _over(what: str, size: int, most: int) -> InvalidArgument:
    return InvalidArgument(
        f"{what} is {size:,} bytes ({units.format_size(size)}), over the limit of {most:,} "
        f"({units.format_size(most)}): raise --max-size to copy it"
    )


def upload(
    client: TenantClient, local: Path, lease: str, service: str, path: str, most: int
) -> int:
    """Send `local` to `path` in the container (a path ending in / is a directory there)."""
    try:
        size = local.stat().st_size
        source = local.open("rb")
    except OSError as exc:
        raise InvalidArgument(f"cannot read {local}: {exc.strerror or exc}") from None
    if not local.is_file():
        raise InvalidArgument(f"{local} is not a regular file: cp copies one file")
    if size > min(most, limits.MAX_COPY_BYTES):
        source.close()
        raise _over(str(local), size, min(most, limits.MAX_COPY_BYTES))
    if not path or path.endswith("/"):
        path = f"{path or '/'}{local.name}"
    opening = pb.ShellOpen(lease_id=lease, service=service, copy_to=path, copy_size=size)
    with source, _progress(size, f"{local.name} → {path}") as bar:

        def chunks() -> Iterator[pb.ShellFrame]:
            left = size  # a file growing meanwhile: only what was announced
            while left > 0 and (data := source.read(min(COPY_CHUNK, left))):
                left -= len(data)
                bar.update(len(data))
                yield pb.ShellFrame(stdin=data)
            yield pb.ShellFrame(stdin_closed=True)

        call = client.shell(opening, chunks())
        for frame in call:
            if frame.error:
                raise FailedPrecondition(frame.error)
            if frame.exited:
                return size
    raise MarketError("the copy ended without the provider's confirmation")


def download(
    client: TenantClient, lease: str, service: str, path: str, local: Path, most: int
) -> int:
    """Fetch `path` from the container into `local` (a directory: under the file's name)."""
    if local.is_dir():
        local = local / (Path(path).name or "download")
    opening = pb.ShellOpen(lease_id=lease, service=service, copy_from=path)
    call = client.shell(opening, iter(()))
    frames = iter(call)
    try:
        size = _announced_size(frames)
        if size > most:
            raise _over(f"{lease}:{path}", size, most)
        return _receive(frames, size, local, f"{path} → {local}")
    finally:
        call.cancel()


def _announced_size(frames: Iterator[pb.ShellFrame]) -> int:
    """The file's size: the provider's first frame (`started`) carries it."""
    for frame in frames:
        if frame.error:
            raise FailedPrecondition(frame.error)
        if frame.started:
            return frame.size
        if frame.stdout or frame.exited:
            raise MarketError("the provider sent the file without its size first")
    raise MarketError("the copy ended before it began")


def _receive(frames: Iterator[pb.ShellFrame], size: int, local: Path, label: str) -> int:
    directory = local.parent if str(local.parent) else Path(".")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{local.name}.", dir=directory)
    except OSError as exc:
        raise InvalidArgument(f"cannot write in {directory}: {exc.strerror or exc}") from None
    received = 0
    try:
        with os.fdopen(handle, "wb") as out, _progress(size, label) as bar:
            for frame in frames:
                if frame.error:
                    raise FailedPrecondition(frame.error)
                if frame.stdout:
                    received += len(frame.stdout)
                    if received > size:
                        raise MarketError(
                            f"the provider sent more than the {size:,} bytes announced"
                        )
                    out.write(frame.stdout)
                    bar.update(len(frame.stdout))
                if frame.exited:
                    break
            else:
                raise MarketError(f"the copy was cut off after {received:,} of {size:,} bytes")
        if received != size:
            raise MarketError(f"the copy ended after {received:,} of {size:,} bytes")
        os.replace(temporary, local)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return received


def _progress(size: int, label: str) -> ProgressBar[int]:
    return click.progressbar(
        length=size, label=label, file=sys.stderr, show_eta=True, show_percent=True
    )
