# ssr's trusted pytest reporter: generated for one run (the secret, the canaries and
# the report path below are that run's), loaded first with `-p`, before the code under
# test is imported. It writes one line per event to a named pipe outside the workspace
# (drained by the host as the run goes, so nothing written can be rewritten later),
# through a descriptor and a bound `os.write` taken at import, so later patches of
# `os`, `sys.stdout` or pytest's reporting do not reach the channel.
#
# It records (a) what pytest's reports say, phase by phase, and (b) independently,
# whether each test function raised, from a wrapper around the call itself: a report
# that says "passed" for a function that raised, or for a function that was never
# called, is forged. It also adds the run's canary tests to the oracle test modules
# after deselection (`-k`, `-m`, node ids), so they run whatever the script selects.
import os as _os


def _make():
    import inspect
    import linecache

    import pytest

    report_path = __REPORT_PATH__
    canaries = __CANARIES__
    fd = _os.open(report_path, _os.O_WRONLY | _os.O_CREAT | _os.O_APPEND, 0o600)
    write = _os.write
    skip_types = (pytest.skip.Exception, pytest.xfail.Exception)
    function_type = pytest.Function
    module_type = pytest.Module

    def emit(*fields):
        clean = [str(f).replace("\t", " ").replace("\n", " ") for f in fields]
        write(fd, ("\t".join(clean) + "\n").encode("utf-8", "replace"))

    emit("begin", _os.getpid())

    def place(module, i, source, pick):
        # A canary is compiled as if it followed the module's last lines, under an
        # alias of the module's path (`dir/././name.py`: the same file to every path
        # function, so reports show the module's path) whose lines are put in
        # linecache, and whose module inspect is told. A failing canary's report then
        # shows the canary's own source, and its traceback costs what a small test's
        # does: pytest otherwise reads and parses the whole module to print a failing
        # line (a must-fail canary in a 6,000-line module cost 70 ms), and inspect
        # walks every loaded module once to map the file to its module (13 ms).
        path = str(module.path)
        head, tail = _os.path.split(path)
        alias = _os.path.join(head, *(["."] * (i + 1)), tail)
        try:
            with open(path, "rb") as f:
                first = f.read().count(b"\n") + 2 + pick % 5
        except OSError:
            first = 1
        lines = ["\n"] * (first - 1) + source.splitlines(True)
        linecache.cache[alias] = (sum(map(len, lines)), None, lines, alias)
        inspect.modulesbyfile[alias] = module.obj.__name__
        return compile("".join(lines), alias, "exec")
    direct = set()
    must_fail = set()
    sessions = []

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(session, config, items):
        modules = []
        for item in items:
            m = item.getparent(module_type)
            if m is not None and m not in modules:
                modules.append(m)
        if not modules:
            emit("no_module")
            return
        # A module-wide mark (skip, xfail) would change a canary's outcome.
        modules = [m for m in modules if not getattr(m.obj, "pytestmark", None)] or modules
        sessions.append(session)
        taken = {item.nodeid for item in items}
        for i, (name, kind, source, pick, slot) in enumerate(canaries):
            # Never where a test of that name exists: a canary must not shadow one.
            free = [
                m
                for m in modules
                if name not in m.obj.__dict__ and m.nodeid + "::" + name not in taken
            ]
            if not free:
                emit("collision", name)
                continue
            module = free[pick % len(free)]
            namespace = dict(module.obj.__dict__)
            exec(place(module, i, source, pick), namespace)
            fn = namespace[name]
            fn.__module__ = module.obj.__name__
            item = function_type.from_parent(module, name=name, callobj=fn)
            items.insert(slot % (len(items) + 1), item)
            emit("canary", item.nodeid, kind)
            if kind == "fail":
                must_fail.add(item.nodeid)
        for item in items:
            if type(item) is function_type:
                direct.add(item.nodeid)

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_pyfunc_call(pyfuncitem):
        outcome = yield
        exc = outcome.excinfo
        raised = exc is not None and not isinstance(exc[1], skip_types)
        emit("call", pyfuncitem.nodeid, "raised" if raised else "returned")

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(report):
        # A must-fail canary's failure is taken back before the session counts it,
        # so `-x`/`--maxfail` and the exit status are those of the real tests.
        if report.nodeid in must_fail and report.failed and sessions:
            sessions[-1].testsfailed -= 1
        emit(
            "report",
            report.nodeid,
            report.when,
            report.outcome,
            "direct" if report.nodeid in direct else "indirect",
        )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(session, exitstatus):
        # `-x`/`--maxfail` (or a test's own stop) ends the loop early: canaries after
        # that point never run, which is not tampering.
        stopped = bool(session.shouldfail or session.shouldstop)
        emit("end", int(exitstatus), "stopped" if stopped else "complete")

    return (
        pytest_collection_modifyitems,
        pytest_pyfunc_call,
        pytest_runtest_logreport,
        pytest_sessionfinish,
    )


(
    pytest_collection_modifyitems,
    pytest_pyfunc_call,
    pytest_runtest_logreport,
    pytest_sessionfinish,
) = _make()
del _make
