# The launcher of a warm Python sandbox (warm.py): the executor writes this file as the sandbox's
# /sandbox/main.py and starts `/usr/bin/python3 -I -B main.py` with it, so the interpreter, its
# argv, sys.path and __main__ are those of the program's own run (the sandbox's shell trampoline
# wrote the start marker and exec'd it, as for a cold run). It writes warm.READY_MARKER, blocks reading its stdin for the hand-over header (the code's length, the run's CPU
# seconds and address-space bytes or 0, as fixed-width decimals) and the code, lowers its own
# RLIMIT_CPU to the run's + the whole seconds of CPU it used so far (RLIMIT_AS too, when given:
# no cgroup), overwrites main.py
# with the code, restores __main__ to what interpreter start-up made of it, and runs the code. What
# follows the code on stdin is the program's own stdin. `resource` is imported before it is ready
# and removed from sys.modules at once (os and sys were loaded by start-up); no docstring and no
# annotations: __main__ must hold exactly what a script's does.
_crucible_main = dict(globals())
import os  # noqa: E402 -- already loaded by start-up; the name goes with the reset below


def _crucible_read(count):
    data = b""
    while len(data) < count:
        chunk = os.read(0, count - len(data))
        if not chunk:
            raise SystemExit(0)  # the executor gave up on this sandbox
        data += chunk
    return data


def _crucible_prepare(main=_crucible_main):
    import resource
    import sys

    del sys.modules["resource"]
    os.write(1, b"\x1ecrucible-warm-ready\x1e")
    header = _crucible_read(40)
    code = _crucible_read(int(header[:16]))
    times = os.times()
    # Whole seconds: start-up's fraction counts, as it does in a cold run's RLIMIT_CPU.
    soft = int(times.user + times.system) + int(header[16:24])
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))
    if int(header[24:40]):
        resource.setrlimit(resource.RLIMIT_AS, (int(header[24:40]), int(header[24:40])))
    fd = os.open(main["__file__"], os.O_WRONLY | os.O_TRUNC)
    try:
        left = memoryview(code)
        while left:
            left = left[os.write(fd, left) :]
    finally:
        os.close(fd)
    namespace = globals()
    namespace.clear()
    namespace.update(main)
    return compile(code, main["__file__"], "exec", dont_inherit=True)


try:
    exec(_crucible_prepare())  # noqa: S102 -- the program, in its sandbox
except SystemExit:
    raise
except BaseException as _crucible_error:  # as the interpreter's own top level
    # The program has ended: print what `python3 main.py` prints, without this file's frames.
    # Builtins come from this frame's own: the program may have bound `type` or `sys` itself.
    _crucible_tb = _crucible_error.__traceback__
    _crucible_builtins = _crucible_tb.tb_frame.f_builtins
    _crucible_tb = _crucible_tb.tb_next
    while _crucible_tb is not None and _crucible_tb.tb_frame.f_code.co_name == "_crucible_prepare":
        _crucible_tb = _crucible_tb.tb_next
    _crucible_builtins["__import__"]("sys").excepthook(
        _crucible_error.__class__, _crucible_error.with_traceback(_crucible_tb), _crucible_tb
    )
    # 130 is what the executor reports for the interpreter's own death by SIGINT.
    raise _crucible_builtins["SystemExit"](
        130 if _crucible_builtins["isinstance"](_crucible_error, KeyboardInterrupt) else 1
    ) from None
