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
    assert out == "" and "not the master" in err


def test_human_output(capsys, monkeypatch):
    def one(ctx):
        return [Result(WARN, "Test service", "careful", ["detail line"])]
    _, out, _ = agent_output(make_check(one), capsys, monkeypatch, argv=["--human"])
    assert out.splitlines()[0].split() == ["WARN", "Test", "service", "careful"]
    assert out.splitlines()[1].strip() == "detail line"


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
