"""The README's main job, `python -m pymemoe demo`, runs and prints what it promises."""
import subprocess
import sys


def test_demo_prints_comparison_and_summary():
    out = subprocess.run([sys.executable, "-m", "pymemoe", "demo", "--n-starts", "2"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for needle in ["llf", "AIC", "BIC", "ICL", "entropy", "%1", "converged", "BIC prefers K =",
                   "Mixed effects mixture of experts", "Gating: multinomial logit",
                   "std err", "Posterior classification"]:
        assert needle in text
    # one row per K = 1, 2, 3 in the comparison table
    rows = [line.split()[0] for line in text.splitlines() if line[:1] in "123" and "-1" in line]
    assert rows[:3] == ["1", "2", "3"]
    # the PBCseq one-expert fit is lme4's maximum (-1525.928)
    assert "-1525.928" in text
