"""The documentation's example of a user testing their own fund variant (docs/how-to/test-your-actor.md)
works as documented: the standard fund passes (sync and in trio mode), the user's variant is caught."""

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parent.parent / "docs" / "examples" / "test_my_fund.py"


def test_the_example_catches_the_users_fund_and_passes_the_standard_one(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(EXAMPLE), "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "-o", "trio_mode=true"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "1 failed, 2 passed" in out
    assert "test_my_fund_never_goes_negative" in out and "fund never negative" in out
