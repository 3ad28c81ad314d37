import pkpd.cli


def test_demo_runs_and_prints_table(capsys, tmp_path):
    fig = tmp_path / "demo.png"
    assert pkpd.cli.main(["demo", "--modalities", "psilocybin", "ect", "--figure", str(fig)]) == 0
    out = capsys.readouterr().out
    assert "psilocybin" in out and "ect" in out and fig.stat().st_size > 1000


def test_demo_rejects_unknown_modality(capsys):
    assert pkpd.cli.main(["demo", "--modalities", "homeopathy"]) == 2
    assert "unknown" in capsys.readouterr().err
