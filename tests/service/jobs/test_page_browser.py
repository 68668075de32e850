"""The screening page in a real headless Chromium (Debian's ``chromium``) against a live server.

Needs ``apt-get install chromium`` (never a browser download); skipped with that reason when it
is absent. The screenshot goes to ``$CRYSTAL_ARTIFACTS_DIR`` (default: ``<tmp>/crystal-artifacts``).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")

CHROMIUM = os.environ.get("CRYSTAL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed: apt-get install chromium (the page test needs it)"
)

_DROP = """([names, texts]) => {
  const data = new DataTransfer();
  names.forEach((name, i) => data.items.add(new File([texts[i]], name, {type: "chemical/x-cif"})));
  const zone = document.querySelector("#drop");
  zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: data, bubbles: true, cancelable: true}));
  zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
}"""


def _artifacts() -> Path:
    folder = Path(os.environ.get("CRYSTAL_ARTIFACTS_DIR") or Path(tempfile.gettempdir()) / "crystal-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_drop_two_good_cifs_and_a_bad_one_see_the_table_sort_it_and_download_csv(
    jobs_server: Any, cifs: dict[str, str]
) -> None:
    expect = sync_api.expect
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(accept_downloads=True, viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(jobs_server.url + "/")
            expect(page).to_have_title("Crystal screening")

            # the registry's models with their test MAE (multi-task: one row per property)
            models = page.locator("#models tbody tr")
            expect(models).to_have_count(5)
            expect(page.locator("#models")).to_contain_text("cgcnn-formation-energy@1")
            expect(models.filter(has_text="cgcnn-formation-energy@1")).to_contain_text("0.055 eV/atom")
            expect(models.filter(has_text="sr-cgcnn-band-gap@2")).to_contain_text("0.330 eV")

            names = ["nacl.cif", "srtio3.cif", "broken.cif"]
            page.evaluate(_DROP, [names, [cifs["nacl"], cifs["srtio3"], cifs["garbage"]]])
            expect(page.locator("#status")).to_contain_text("Done: 3 of 3 files, 2 predicted, 1 failed", timeout=30_000)
            rows = page.locator("#results tbody tr")
            expect(rows).to_have_count(3)

            # two numbers and one error in words
            energies = page.locator("#results tbody td:nth-child(4)").all_inner_texts()
            gaps = page.locator("#results tbody td:nth-child(5)").all_inner_texts()
            assert sorted(e == "" for e in energies) == [False, False, True]
            assert all(float(v) == float(v) for v in energies + gaps if v)
            broken = rows.filter(has_text="broken.cif")
            expect(broken).to_contain_text("does not look like a CIF")
            expect(broken).to_contain_text("invalid_cif")
            expect(rows.filter(has_text="srtio3.cif")).to_contain_text("SrTiO3")

            # sorting by formation energy: ascending, then descending; the failed row stays last
            header = page.locator('#results th[data-key="formation_energy_per_atom"]')
            header.locator("button").click()
            expect(header).to_have_attribute("aria-sort", "ascending")
            values = page.locator("#results tbody td:nth-child(4)").all_inner_texts()
            assert float(values[0]) <= float(values[1]) and values[2] == ""
            header.locator("button").click()
            expect(header).to_have_attribute("aria-sort", "descending")
            values = page.locator("#results tbody td:nth-child(4)").all_inner_texts()
            assert float(values[0]) >= float(values[1]) and values[2] == ""

            with page.expect_download() as info:
                page.locator("#download").click()
            download = info.value
            assert download.suggested_filename.endswith(".csv")
            rows_csv = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
            assert {r["file"] for r in rows_csv} == set(names)
            assert sum(1 for r in rows_csv if r["formation_energy_per_atom"]) == 2
            assert [r["error_code"] for r in rows_csv if r["file"] == "broken.cif"] == ["invalid_cif"]

            shot = _artifacts() / "screening-page.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"\nscreenshot: {shot}")
            assert errors == []
        finally:
            browser.close()
