# ssr's trusted unittest reporter: generated for one run, found first on the run's
# read-only PYTHONPATH entry as `sitecustomize`, so it is in place before the code
# under test is imported. It wraps unittest's runner, its result calls and the test
# method call itself, and writes one line per event to a file outside the
# workspace (same events as the pytest plugin). A result call of "success" for a
# test whose method raised is forged. The run's canaries are added to the suite.
import os as _os

# Frames of this module are hidden from failure tracebacks, like unittest's own.
__unittest = True


def _install():
    import unittest
    import unittest.case
    import unittest.result
    import unittest.main
    import unittest.runner
    import sys

    report_path = __REPORT_PATH__
    canaries = __CANARIES__
    write = _os.write
    opened = []

    def emit(*fields):
        if not opened:
            opened.append(
                _os.open(report_path, _os.O_WRONLY | _os.O_CREAT | _os.O_APPEND, 0o600)
            )
        clean = [str(f).replace("\t", " ").replace("\n", " ") for f in fields]
        write(opened[0], ("\t".join(clean) + "\n").encode("utf-8", "replace"))

    skip_type = unittest.SkipTest
    must_fail = set()
    active = []

    original_call = unittest.case.TestCase._callTestMethod

    def call_test_method(self, method):
        try:
            original_call(self, method)
        except skip_type:
            raise
        except BaseException:
            if active:
                emit("call", self.id(), "raised")
            raise
        if active:
            emit("call", self.id(), "returned")

    unittest.case.TestCase._callTestMethod = call_test_method

    result_type = unittest.result.TestResult

    def wrap(name, outcome):
        original = getattr(result_type, name)

        def recorded(self, test, *args):
            if active and hasattr(test, "id"):
                # A class with its own method call (IsolatedAsyncioTestCase) is not
                # seen by the wrapper: its passes are not required to show a call.
                own = getattr(type(test), "_callTestMethod", None) is call_test_method
                emit("report", test.id(), "call", outcome, "direct" if own else "indirect")
            return original(self, test, *args)

        setattr(result_type, name, recorded)

    wrap("addSuccess", "passed")
    wrap("addFailure", "failed")
    wrap("addError", "failed")
    wrap("addSkip", "skipped")
    wrap("addExpectedFailure", "skipped")
    wrap("addUnexpectedSuccess", "passed")
    original_subtest = result_type.addSubTest

    def add_subtest(self, test, subtest, err):
        if active and err is not None:
            emit("report", test.id(), "call", "failed", "direct")
        return original_subtest(self, test, subtest, err)

    result_type.addSubTest = add_subtest

    def flatten(suite):
        for t in suite:
            if isinstance(t, unittest.TestSuite):
                yield from flatten(t)
            else:
                yield t

    begun = []

    def begin():
        if not begun:
            emit("begin", _os.getpid(), "unittest")
            begun.append(True)

    # `python -m unittest` loads the tests (and imports the code under test) before
    # it runs them: the session begins when the program starts.
    program_type = sys.modules["unittest.main"].TestProgram
    original_init = program_type.__init__

    def init(self, *args, **kwargs):
        begin()
        return original_init(self, *args, **kwargs)

    program_type.__init__ = init

    original_run = unittest.runner.TextTestRunner.run

    def run(self, test):
        begin()
        active.append(True)
        cases = [t for t in flatten(test) if isinstance(t, unittest.TestCase)]
        modules = []
        for t in cases:
            m = sys.modules.get(type(t).__module__)
            if m is not None and m not in modules:
                modules.append(m)
        if not modules:
            emit("no_module")
        else:
            extra = unittest.TestSuite()
            for name, kind, source, pick, slot in canaries:
                owners = [type(t) for t in cases if not hasattr(type(t), name)]
                if not owners:
                    emit("collision", name)
                    continue
                owner = owners[slot % len(owners)]
                module = sys.modules.get(owner.__module__) or modules[pick % len(modules)]
                namespace = dict(module.__dict__)
                exec(compile(source.replace("():", "(self):", 1), module.__file__ or "<test>", "exec"), namespace)
                fn = namespace[name]
                cls = type(owner.__name__, (unittest.TestCase,), {name: fn})
                cls.__module__ = module.__name__
                cls.__qualname__ = owner.__qualname__
                case = cls(name)
                emit("canary", case.id(), kind)
                if kind == "fail":
                    must_fail.add(case.id())
                extra.addTest(case)
            test = unittest.TestSuite([test, extra])
        result = original_run(self, test)
        # A must-fail canary's failure is taken back, so the exit status is the
        # real tests'.
        result.failures = [f for f in result.failures if f[0].id() not in must_fail]
        stopped = bool(getattr(result, "shouldStop", False))
        emit("end", 0 if result.wasSuccessful() else 1, "stopped" if stopped else "complete")
        active.clear()
        begun.clear()
        return result

    unittest.runner.TextTestRunner.run = run


try:
    _install()
finally:
    del _install


def _chain():
    # Ours shadows any other `sitecustomize` (a distribution's): run that one too.
    import importlib.machinery
    import importlib.util
    import sys

    here = _os.path.dirname(_os.path.abspath(__file__))
    rest = [p for p in sys.path if _os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_chain()
del _chain
