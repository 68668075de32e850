"""The screening page in a real headless Chromium (Debian's ``chromium``) against a live server.

Needs ``apt-get install chromium`` (never a browser download); skipped with that reason when it
is absent. One server (the session's ``jobs_server``) and one browser for the module; each test
drops files on a fresh page and checks what the page shows against the job's own answers.
Screenshots go to ``$CRYSTAL_ARTIFACTS_DIR`` (default: ``<tmp>/crystal-artifacts``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")

CHROMIUM = os.environ.get("CRYSTAL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed: apt-get install chromium (the page test needs it)"
)
expect = sync_api.expect

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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser: Any, jobs_server: Any) -> Iterator[Any]:
    """``open_page(width=1200)``: the page in a fresh context; JavaScript errors fail the test."""
    contexts: list[Any] = []
    errors: list[str] = []

    def start(width: int = 1200) -> Any:
        context = browser.new_context(accept_downloads=True, viewport={"width": width, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(jobs_server.url + "/")
        expect(page.locator("#models-status")).to_contain_text("models loaded")
        return page

    yield start
    for context in contexts:
        context.close()
    assert errors == []


def _drop(page: Any, files: dict[str, str], done: str) -> None:
    page.evaluate(_DROP, [list(files), list(files.values())])
    expect(page.locator("#status")).to_contain_text(done, timeout=120_000)


def _answers(client: httpx.Client) -> dict[str, dict[str, Any]]:
    """The newest job's answers (NDJSON from the API), by file name."""
    job = client.get("/v1/jobs", params={"limit": 1}).raise_for_status().json()["jobs"][0]
    text = client.get(f"/v1/jobs/{job['id']}/results", params={"format": "ndjson"}).raise_for_status().text
    return {item["filename"]: item for item in map(json.loads, text.splitlines())}


def _download_csv(page: Any) -> list[dict[str, str]]:
    with page.expect_download() as info:
        page.locator("#download").click()
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    return list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))


def _column(page: Any, key: str) -> list[str]:
    return page.locator(f'#results tbody td[data-key="{key}"]').all_inner_texts()


def test_drop_two_good_cifs_and_a_bad_one_see_the_table_sort_it_and_download_csv(
    open_page: Any, cifs: dict[str, str]
) -> None:
    page = open_page()
    # the registry's models with their test MAE (multi-task: one row per property)
    models = page.locator("#models tbody tr")
    expect(models).to_have_count(5)
    expect(page.locator("#models")).to_contain_text("cgcnn-formation-energy@1")
    expect(models.filter(has_text="cgcnn-formation-energy@1")).to_contain_text("0.055 eV/atom")
    expect(models.filter(has_text="sr-cgcnn-band-gap@2")).to_contain_text("0.330 eV")

    names = ["nacl.cif", "srtio3.cif", "broken.cif"]
    _drop(
        page,
        dict(zip(names, [cifs["nacl"], cifs["srtio3"], cifs["garbage"]], strict=True)),
        "Done: 3 of 3 files, 2 predicted, 1 failed",
    )
    rows = page.locator("#results tbody tr")
    expect(rows).to_have_count(3)

    # two numbers and one error in words
    energies = _column(page, "formation_energy_per_atom")
    gaps = _column(page, "band_gap")
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
    values = _column(page, "formation_energy_per_atom")
    assert float(values[0]) <= float(values[1]) and values[2] == ""
    header.locator("button").click()
    expect(header).to_have_attribute("aria-sort", "descending")
    values = _column(page, "formation_energy_per_atom")
    assert float(values[0]) >= float(values[1]) and values[2] == ""

    rows_csv = _download_csv(page)
    assert {r["file"] for r in rows_csv} == set(names)
    assert sum(1 for r in rows_csv if r["formation_energy_per_atom"]) == 2
    assert [r["error_code"] for r in rows_csv if r["file"] == "broken.cif"] == ["invalid_cif"]
    # everything the answer carries has a column: warnings, p_metal, sigma (empty: these models have none)
    assert {"warnings", "band_gap_p_metal", "formation_energy_per_atom_sigma", "band_gap_sigma"} <= set(rows_csv[0])
    assert all(r["formation_energy_per_atom_sigma"] == "" for r in rows_csv)


def test_warnings_badges_scatter_plot_and_files_counted_apart_from_structures(
    open_page: Any, cifs: dict[str, str], jobs_client: httpx.Client
) -> None:
    page = open_page()
    files = {
        "nacl.cif": cifs["nacl"],
        "cscl.cif": cifs["cscl"],
        "two.cif": cifs["two_blocks"],
        "bad.cif": cifs["garbage"],
    }
    # 4 files, 5 rows (two.cif has two data blocks): 4 structures predicted, 1 failed
    _drop(page, files, "Done: 4 of 4 files, 4 predicted, 1 failed")
    expect(page.locator("#results tbody tr")).to_have_count(5)
    answers = _answers(jobs_client)
    predicted = [name for name, a in answers.items() if a["ok"]]
    assert len(predicted) == 4

    # warnings: a badge per code, the full sentence on hover (its title)
    warned = answers["cscl.cif"]["warnings"]
    assert [w["code"] for w in warned] and all(w["code"] == "element_not_in_training_set" for w in warned)
    # (one badge per code: each model that lacks Cs says so, and both sentences share the badge)
    badges = page.locator("#results tbody tr", has_text="cscl.cif").locator("td.warnings .badge")
    expect(badges).to_have_count(1)
    expect(badges).to_have_text("element_not_in_training_set")
    assert badges.get_attribute("title") == "\n".join(w["detail"] for w in warned)
    expect(page.locator("#results tbody tr", has_text="nacl.cif").locator(".badge")).to_have_count(0)

    # the plot: one point per predicted structure, at its answer's numbers
    points = page.locator("#scatter circle.point")
    expect(points).to_have_count(4)
    assert sorted(points.evaluate_all("ps => ps.map(p => p.dataset.file)")) == sorted(predicted)
    expect(page.locator('#scatter circle.point[data-file="cscl.cif"]')).to_have_class("point warned")
    assert all(
        a["predictions"]["band_gap"]["value"] is not None and a["predictions"]["formation_energy_per_atom"]
        for a in answers.values()
        if a["ok"]
    )
    # hover: the file; click: its row is selected and in view
    target = predicted[-1]
    page.locator(f'#scatter circle.point[data-file="{target}"]').hover()
    expect(page.locator("#plot-tip")).to_be_visible()
    expect(page.locator("#plot-tip")).to_have_text(target)
    page.locator(f'#scatter circle.point[data-file="{target}"]').click()
    selected = page.locator("#results tbody tr.selected")
    expect(selected).to_have_count(1)
    expect(selected.locator("td.file")).to_have_text(target)
    expect(selected).to_be_in_viewport()
    expect(page.locator("#scatter circle.point.selected")).to_have_attribute("data-file", target)

    rows_csv = _download_csv(page)
    assert [r["warnings"] for r in rows_csv if r["file"] == "cscl.cif"] == [" ".join(w["code"] for w in warned)]
    page.screenshot(path=str(_artifacts() / "screening-page.png"), full_page=True)


def test_alternatives_are_compact_and_p_metal_has_a_column(
    open_page: Any, cifs: dict[str, str], jobs_client: httpx.Client
) -> None:
    page = open_page()
    page.locator("#models-box summary").click()
    choices = page.locator("#model-choices input").evaluate_all("xs => xs.map(x => x.value)")
    # the multi-task model (with a metal head) first: it answers, the band-gap model is its alternative
    assert choices.index("cgcnn-multitask@1") < choices.index("sr-cgcnn-band-gap@2")
    for ref in ("cgcnn-multitask@1", "sr-cgcnn-band-gap@2", "sr-cgcnn-band-gap@1", "cgcnn-formation-energy@1"):
        page.locator(f'#model-choices input[value="{ref}"]').check()
    _drop(page, {"nacl.cif": cifs["nacl"], "srtio3.cif": cifs["srtio3"]}, "Done: 2 of 2 files, 2 predicted, 0 failed")
    answers = _answers(jobs_client)

    row = page.locator("#results tbody tr", has_text="nacl.cif")
    nacl = answers["nacl.cif"]
    gap = nacl["predictions"]["band_gap"]
    assert gap["model"] == "cgcnn-multitask" and gap["p_metal"] is not None
    expect(row.locator('td[data-key="band_gap"]')).to_contain_text(f"{gap['value']:.3f}")
    # the other models' answers: a "+N" mark in the value cell, each answer on hover
    alt = row.locator('td[data-key="band_gap"] .alt')
    expect(alt).to_have_text(f"+{len(nacl['alternatives']['band_gap'])}")
    title = alt.get_attribute("title") or ""
    for other in nacl["alternatives"]["band_gap"]:
        assert f"{other['model']}@{other['version']}: {other['value']:.3f} eV" in title
    expect(row.locator('td[data-key="formation_energy_per_atom"] .alt')).to_have_text("+1")
    expect(page.locator('th[data-key="p_metal"]')).to_be_visible()
    expect(row.locator("td.col-p-metal")).to_have_text(f"{gap['p_metal']:.2f}")

    # the model column stays one line, whatever the number of models
    clip = row.locator("td.col-model .clip")
    height, line = clip.evaluate("e => [e.getBoundingClientRect().height, parseFloat(getComputedStyle(e).lineHeight)]")
    assert height < 1.5 * line, (height, line)

    rows_csv = _download_csv(page)
    by_file = {r["file"]: r for r in rows_csv}
    for name, answer in answers.items():
        r = by_file[name]
        assert abs(float(r["band_gap"]) - answer["predictions"]["band_gap"]["value"]) <= 1e-6
        assert abs(float(r["band_gap_p_metal"]) - answer["predictions"]["band_gap"]["p_metal"]) <= 1e-6
        for other in answer["alternatives"]["band_gap"]:
            column = f"band_gap@{other['model']}@{other['version']}"
            assert abs(float(r[column]) - other["value"]) <= 1e-6, column
        assert r["band_gap_model"] == "cgcnn-multitask@1"


def test_sigma_is_shown_as_plus_minus_when_the_answer_has_one(open_page: Any) -> None:
    page = open_page()
    shown = page.evaluate(
        """async () => {
          const rows = await import("/static/rows.js");
          return [rows.formatValue({value: -1.23456, sigma: 0.0712}), rows.formatValue({value: -1.23456}),
                  rows.formatValue({value: -1.23456, sigma: null})];
        }"""
    )
    assert shown == ["-1.235 ± 0.071", "-1.235", "-1.235"]


def test_narrow_window_keeps_the_error_column_in_view(open_page: Any, cifs: dict[str, str]) -> None:
    page = open_page(width=700)
    files = {"a-rather-long-file-name-for-sodium-chloride.cif": cifs["nacl"], "cscl.cif": cifs["cscl"]}
    _drop(page, {**files, "broken.cif": cifs["garbage"]}, "Done: 3 of 3 files, 2 predicted, 1 failed")
    # scrolled down only (never sideways, which would hide the column rather than show it)
    wrap = page.locator(".table-wrap")
    assert wrap.evaluate("w => w.scrollWidth <= w.clientWidth"), "the table overflows sideways"
    header = page.locator('#results th[data-key="error"]')
    error = page.locator("#results tbody tr", has_text="broken.cif").locator("td.error")
    expect(error).to_contain_text("does not look like a CIF")
    header.evaluate("e => window.scrollTo(0, e.getBoundingClientRect().top + window.scrollY - 40)")
    assert page.evaluate("window.scrollX") == 0
    expect(header).to_be_in_viewport(ratio=1)
    expect(error).to_be_in_viewport(ratio=1)
    for cell in (header, error):
        box = cell.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 700, box
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 700
    page.screenshot(path=str(_artifacts() / "screening-page-700px.png"), full_page=True)


@pytest.fixture
def stuck_service(service_on_ray: Any) -> Iterator[Any]:
    """A ``python -m service`` whose jobs cannot start: its local Ray instance has fewer CPUs than its actors ask."""
    pytest.importorskip("ray")
    with tempfile.TemporaryDirectory(prefix="rp") as temp:  # short: Ray's socket paths are capped
        live = service_on_ray(
            "local",
            CRYSTAL_RAY_ACTOR_CPUS="256",
            CRYSTAL_RAY_START_TIMEOUT_S="1",
            RAY_TMPDIR=temp,
            RAY_USAGE_STATS_ENABLED="0",
        )
        yield live
        live.stop()  # before its Ray files go


def test_a_job_that_cannot_start_says_why_on_the_page(browser: Any, stuck_service: Any, cifs: dict[str, str]) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(stuck_service.url + "/")
    expect(page.locator("#models-status")).to_contain_text("models loaded")
    _drop(page, {"nacl.cif": cifs["nacl"]}, "Queued: 0 of 1 files")
    expect(page.locator("#status")).to_contain_text("The ray executor could not start (TimeoutError:", timeout=120_000)
    expect(page.locator("#status")).to_contain_text("asks for 256 CPU")
    page.screenshot(path=str(_artifacts() / "screening-page-waiting.png"))
    page.close()
    assert errors == []
