"""The runner: agent mode never breaks, errors and hangs become UNKNOWN."""

import time

import pytest

from ganeti_cmk.config import Config
from ganeti_cmk.localcheck import CRIT, OK, UNKNOWN, WARN, NotApplicable, Result
from ganeti_cmk.runner import Check, main
from localcheck_grammar import assert_valid_output


def make_check(run):
    return Check("test_check", "Test service", "a test", run)


def agent_output(check, capsys, monkeypatch, config_text="", argv=()):
    monkeypatch.setattr(Check, "config",
                        lambda self, path=None: Config(path, text=config_text))
    code = main(check, list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_exception_becomes_one_unknown_line(capsys, monkeypatch):
    def boom(ctx):
        raise KeyError("pid")
    code, out, err = agent_output(make_check(boom), capsys, monkeypatch)
    assert code == 0
    service = assert_valid_output(out)[None]["Test service"]
    assert service["state"] == "3"
    assert "KeyError" in service["summary"] and "--debug" in service["summary"]
    assert "Traceback" not in out


def test_debug_reraises(capsys, monkeypatch):
    def boom(ctx):
        raise KeyError("pid")
    monkeypatch.setattr(Check, "config", lambda self, path=None: Config(path, text=""))
    with pytest.raises(KeyError):
        main(make_check(boom), ["--debug"])


def test_deadline_turns_a_hang_into_unknown(capsys, monkeypatch):
    def hang(ctx):
        time.sleep(30)
    code, out, _ = agent_output(make_check(hang), capsys, monkeypatch,
                                "[general]\ndeadline = 1\n")
    service = assert_valid_output(out)[None]["Test service"]
    assert code == 0 and service["state"] == "3"
    assert "deadline of 1 s" in service["summary"]


def test_nagios_exit_code_is_worst_state(capsys, monkeypatch):
    def two(ctx):
        return [Result(CRIT, "a", "bad"), Result(UNKNOWN, "b", "unsure")]
    code, out, _ = agent_output(make_check(two), capsys, monkeypatch, argv=["--nagios"])
    assert code == 2 and out.startswith("CRITICAL - ") and out.count("\n") == 1


def test_config_problem_raises_to_warn_and_names_the_key(capsys, monkeypatch):
    def fine(ctx):
        ctx.config.get_duration("general", "deadline")
        return [Result(OK, "Test service", "all good")]
    code, out, _ = agent_output(make_check(fine), capsys, monkeypatch,
                                "[general]\ndeadline = forever\n")
    service = assert_valid_output(out)[None]["Test service"]
    assert service["state"] == "1"
    assert "[general] deadline: 'forever' is not a duration" in service["summary"]


def test_not_applicable_prints_nothing_on_stdout(capsys, monkeypatch):
    def elsewhere(ctx):
        raise NotApplicable("this node is not the master")
    code, out, err = agent_output(make_check(elsewhere), capsys, monkeypatch)
    assert (code, out) == (0, "")
    assert err == "Test service: this node is not the master\n"
    code, out, err = agent_output(make_check(elsewhere), capsys, monkeypatch,
                                  argv=["--human"])
    assert (code, out, err) == (
        0, "-        Test service: not monitored here: this node is not the master\n", "")


def test_not_applicable_by_nagios_is_one_ok_line_saying_why(capsys, monkeypatch):
    """No output at all reads "(No output returned from plugin)" in Nagios:
    one OK line, exit 0, as plugins do when there is nothing to check."""
    def elsewhere(ctx):
        raise NotApplicable("this node is not the master")
    code, out, err = agent_output(make_check(elsewhere), capsys, monkeypatch,
                                  argv=["--nagios"])
    assert (code, out, err) == (
        0, "OK - not applicable here: this node is not the master\n", "")


def test_human_output(capsys, monkeypatch):
    def one(ctx):
        return [Result(WARN, "Test service", "careful", ["detail line"])]
    _, out, _ = agent_output(make_check(one), capsys, monkeypatch, argv=["--human"])
    assert out.splitlines()[0].split() == ["WARN", "Test", "service", "careful"]
    assert out.splitlines()[1].strip() == "detail line"


# --- output: whatever the locale, wherever stdout goes -----------------------

NON_ASCII_CONFIG = "[general]\ndeadline = sööön\n"


@pytest.mark.parametrize("env", [
    {"PYTHONIOENCODING": "ascii"},
    {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"},
], ids=["PYTHONIOENCODING=ascii", "LC_ALL=C"])
@pytest.mark.parametrize("mode", [[], ["--nagios"], ["--human"]], ids=["agent", "nagios", "human"])
def test_non_ascii_text_with_an_ascii_stdout_is_written_as_utf8(tmp_path, env, mode):
    """Checkmk reads UTF-8; an ASCII locale made such a line an UNKNOWN
    (UnicodeEncodeError)."""
    from support import run_script
    proc = run_script("ganeti_kvm_device", *mode, tmp_path=tmp_path,
                      config_text=NON_ASCII_CONFIG, env=env)
    assert proc.stderr == ""
    assert "[general] deadline: 'sööön' is not a duration" in proc.stdout
    assert "UnicodeEncodeError" not in proc.stdout
    if not mode:
        assert_valid_output(proc.stdout)


@pytest.mark.parametrize("mode", [[], ["--nagios"], ["--human"]], ids=["agent", "nagios", "human"])
def test_closed_stdout_is_no_traceback(tmp_path, mode):
    """`check >&-`: nothing to write to; exit as if written (agent mode 0),
    and nothing on stderr."""
    import subprocess
    from support import check_command
    (tmp_path / "ganeti_cmk.cfg").write_text(NON_ASCII_CONFIG)
    proc = subprocess.run(
        ["sh", "-c", 'exec "$@" >&-', "sh"] + check_command("ganeti_kvm_device") + mode,
        env={"PATH": "/usr/bin:/bin", "MK_CONFDIR": str(tmp_path),
             "MK_VARDIR": str(tmp_path)},
        stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, universal_newlines=True,
        timeout=60)
    assert proc.stderr == ""
    assert proc.returncode == (1 if mode == ["--nagios"] else 0)  # --nagios: WARN


@pytest.mark.parametrize("mode", [[], ["--nagios"], ["--human"]], ids=["agent", "nagios", "human"])
def test_stdout_that_fails_to_write_is_no_traceback(tmp_path, mode):
    """`check >/dev/full` (a full disk, EIO): the agent cannot get the
    line, but the check still exits as if written (agent mode 0) and says
    on stderr why, without a traceback (it exited 1 with two)."""
    import subprocess
    from support import check_command
    (tmp_path / "ganeti_cmk.cfg").write_text(NON_ASCII_CONFIG)
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            check_command("ganeti_kvm_device") + mode,
            env={"PATH": "/usr/bin:/bin", "MK_CONFDIR": str(tmp_path),
                 "MK_VARDIR": str(tmp_path)},
            stdin=subprocess.DEVNULL, stdout=full, stderr=subprocess.PIPE,
            universal_newlines=True, timeout=60)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("ganeti-cmk: cannot write to stdout: ")
    assert "No space left on device" in proc.stderr
    assert proc.returncode == (1 if mode == ["--nagios"] else 0)  # --nagios: WARN


def test_broken_pipe_is_quiet(tmp_path):
    """A reader that goes away (`| head -c0`): no complaint on stderr."""
    import subprocess
    from support import check_command
    import shlex
    cmd = " ".join(shlex.quote(a) for a in check_command("ganeti_kvm_device"))
    proc = subprocess.run(["sh", "-c", "%s --human | true" % cmd],
                          env={"PATH": "/usr/bin:/bin", "MK_CONFDIR": str(tmp_path),
                               "MK_VARDIR": str(tmp_path)},
                          stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)
    assert proc.stderr == ""


# --- --human: never cut a detail silently ------------------------------------

def test_human_wraps_long_details_on_a_terminal_and_keeps_every_word(monkeypatch):
    from ganeti_cmk.human import render_human
    monkeypatch.setenv("COLUMNS", "60")
    words = ["word%03d" % i for i in range(60)]
    r = Result(WARN, "Test service", "careful", [" ".join(words)])
    lines = render_human([r], colour=True).splitlines()[1:]
    assert len(lines) > 5 and all(len(line) <= 60 for line in lines)
    assert " ".join(lines).split() == words


def test_human_into_a_pipe_keeps_each_detail_whole(monkeypatch):
    from ganeti_cmk.human import render_human
    monkeypatch.setenv("COLUMNS", "60")
    detail = "x" * 300
    r = Result(WARN, "Test service", "careful", [detail])
    assert render_human([r]).splitlines()[1] == " " * 11 + detail


def test_a_service_name_is_printed_once(capsys, monkeypatch):
    def twice(ctx):
        return [Result(OK, "Test service", "first"), Result(CRIT, "Test service", "second"),
                Result(OK, "Other", "fine"), Result(OK, "Test service", "piggy", host="h1")]
    code, out, _ = agent_output(make_check(twice), capsys, monkeypatch)
    hosts = assert_valid_output(out)
    own = hosts[None]
    assert sorted(own) == ["Other", "Test service"] and "Test service" in hosts["h1"]
    assert own["Test service"]["state"] == "2" and own["Test service"]["summary"] == "first"
    assert "another result for this service (a bug, please report it): CRIT second" in \
        own["Test service"]["details"]


def test_config_problems_always_fit_and_never_cut_the_summary(capsys, monkeypatch):
    from ganeti_cmk.words import SUMMARY_MAX
    summary = "x" * (SUMMARY_MAX - 4) + " fix"

    def long(ctx):
        ctx.config.get_duration("general", "deadline")
        return [Result(OK, "Test service", summary)]
    _, out, _ = agent_output(make_check(long), capsys, monkeypatch,
                             "[general]\ndeadline = forever\n")
    service = assert_valid_output(out)[None]["Test service"]
    assert service["state"] == "1"
    assert service["summary"] == summary + " (config problem, see details)"
    assert service["details"][0].startswith("config problem: [general] deadline: 'forever'")


def test_an_unknown_section_is_a_config_problem_of_every_check(capsys, monkeypatch):
    def fine(ctx):
        return [Result(OK, "Test service", "all good")]
    monkeypatch.setattr(Check, "config", lambda self, path=None: Config(
        path, text="[kvm_bianry]\nwarn_after = 1h\n", sections=("kvm_binary",)))
    main(make_check(fine), [])
    service = assert_valid_output(capsys.readouterr().out)[None]["Test service"]
    assert service["state"] == "1"
    assert "[kvm_bianry]: unknown section, ignored" in service["summary"]
