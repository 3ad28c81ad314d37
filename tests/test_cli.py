import pkpd.cli


def test_demo_runs_and_prints_table(capsys, tmp_path):
    fig = tmp_path / "demo.png"
    assert pkpd.cli.main(["demo", "--modalities", "psilocybin", "ect", "--figure", str(fig)]) == 0
    out = capsys.readouterr().out
    assert "psilocybin" in out and "ect" in out and fig.stat().st_size > 1000


def test_demo_rejects_unknown_modality(capsys):
    assert pkpd.cli.main(["demo", "--modalities", "homeopathy"]) == 2
    assert "unknown" in capsys.readouterr().err


def test_compare_cli_writes_json_and_figure(capsys, tmp_path):
    import json

    claims = tmp_path / "claims.toml"
    claims.write_text(
        '[[claim]]\nid = "c"\ntext = "t"\nmodalities = ["dmt"]\nreadout = "spine_density"\n'
        'metric = "t50_h"\nop = "<"\nthreshold = 24.0\n'
    )
    out_json, fig = tmp_path / "r.json", tmp_path / "r.png"
    argv = [
        "compare",
        "--quick",
        "--modalities",
        "dmt",
        "--claims",
        str(claims),
        "--json",
        str(out_json),
        "--figure",
        str(fig),
        "--no-progress",
    ]
    assert pkpd.cli.main(argv) == 0
    out = capsys.readouterr().out
    rep = json.loads(out_json.read_text())
    assert set(rep) >= {"modalities", "claims", "counterfactuals"}
    assert (
        rep["modalities"][0]["name"] == "dmt" and len(rep["modalities"][0]["readouts"]["spine_density"]["t50_h"]) == 3
    )
    assert rep["claims"][0]["verdict"] in ("supported", "contradicted", "uncertain") and "claims:" in out
    assert fig.stat().st_size > 10_000


def test_compare_cli_refuses_bad_arguments(capsys, tmp_path):
    assert pkpd.cli.main(["compare", "--modalities", "homeopathy"]) == 2
    assert "unknown" in capsys.readouterr().err
    assert pkpd.cli.main(["compare", "--draws", "1"]) == 2
    assert pkpd.cli.main(["compare", "--claims", str(tmp_path / "none.toml"), "--modalities", "dmt"]) == 2


def test_the_pkpd_command_uses_one_cpu_device_per_core_unless_xla_flags_say_otherwise():
    import os
    import subprocess
    import sys

    code = "import pkpd.cli; print(pkpd.cli.use_every_core())"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) == max(1, os.cpu_count() or 1)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"  # the user's choice wins
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and int(out.stdout.split()[-1]) == 1, out.stderr[-2000:]
    import jax

    jax.devices()  # a running backend: nothing changes, no error
    assert pkpd.cli.use_every_core() == len(jax.devices("cpu"))
