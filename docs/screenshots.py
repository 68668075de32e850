"""Take the README's screenshots: the screening page with results, and ``/docs``.

Run from the repository root: ``.venv/bin/python docs/screenshots.py`` (needs Debian's ``chromium``
and the dev extras). It starts ``python -m service`` on the shipped ``models/`` (job data in a
temporary folder, a free loopback port), drops ``examples/*.cif``, 21 simple crystals built here
with pymatgen and one file that is not a CIF on the page, and writes ``docs/screening-page.png``
and ``docs/api-docs.png``, reduced to 128 colours to keep them small.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx
from PIL import Image
from playwright.sync_api import expect, sync_playwright
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs"
DROP = """([names, texts]) => {
  const data = new DataTransfer();
  names.forEach((name, i) => data.items.add(new File([texts[i]], name, {type: "chemical/x-cif"})));
  document.querySelector("#drop").dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
}"""


def crystals() -> dict[str, str]:
    """CIFs of simple prototype crystals: rock salts, zinc blendes, CsCl, fcc/bcc metals, perovskites."""
    made: dict[str, Structure] = {}
    rocksalts = [("K", "Br", 6.60), ("Mg", "O", 4.21), ("Li", "F", 4.03), ("Ca", "O", 4.81)]
    rocksalts += [("Ag", "Cl", 5.55), ("Pb", "S", 5.94), ("Ti", "N", 4.24)]  # NaCl: examples/NaCl.cif
    for a, b, lat in rocksalts:
        made[f"{a}{b}-rocksalt"] = Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(lat), [a, b], [[0, 0, 0], [0.5] * 3]
        )
    for a, b, lat in [("Ga", "As", 5.65), ("Zn", "S", 5.41), ("Si", "C", 4.36), ("In", "P", 5.87)]:
        made[f"{a}{b}-zincblende"] = Structure.from_spacegroup(
            "F-43m", Lattice.cubic(lat), [a, b], [[0, 0, 0], [0.25] * 3]
        )
    for a, b, lat in [("Cs", "Cl", 4.12), ("Cs", "Br", 4.29)]:
        made[f"{a}{b}"] = Structure(Lattice.cubic(lat), [a, b], [[0, 0, 0], [0.5] * 3])
    for el, lat in [("Al", 4.05), ("Ni", 3.52), ("Au", 4.08)]:
        made[f"{el}-fcc"] = Structure.from_spacegroup("Fm-3m", Lattice.cubic(lat), [el], [[0, 0, 0]])
    for el, lat in [("Fe", 2.87), ("W", 3.16)]:
        made[f"{el}-bcc"] = Structure.from_spacegroup("Im-3m", Lattice.cubic(lat), [el], [[0, 0, 0]])
    for a, b, lat in [("Sr", "Ti", 3.905), ("Ba", "Ti", 4.00), ("Ca", "Zr", 4.02)]:
        sites = [[0, 0, 0], [0.5] * 3, [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
        made[f"{a}{b}O3-perovskite"] = Structure(Lattice.cubic(lat), [a, b, "O", "O", "O"], sites)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {f"{name}.cif": str(CifWriter(s)) for name, s in made.items()}


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clip(height: int) -> dict[str, float]:
    """The top of the page, ``height`` pixels of it, the window's width."""
    return {"x": 0, "y": 0, "width": 1100, "height": height}


def small_png(path: Path) -> None:
    """Rewrite a screenshot with 128 colours (a third of the size; text stays sharp)."""
    Image.open(path).convert("RGB").quantize(colors=128).save(path, optimize=True)


def main() -> None:
    """Serve the shipped models, fill the page, take both screenshots."""
    files = {p.name: p.read_text() for p in sorted((ROOT / "examples").glob("*.cif"))}
    files.update(crystals())
    files["notes.cif"] = "These are my notes, not a crystal.\n"
    chromium = os.environ.get("CRYSTAL_CHROMIUM") or shutil.which("chromium")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "CRYSTAL_DATA_DIR": data, "CRYSTAL_MODELS_DIR": str(ROOT / "models")}
        cmd = [sys.executable, "-m", "service", "--port", str(port), "--log-level", "warning"]
        server = subprocess.Popen(cmd, cwd=ROOT, env=env)
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the service did not get ready")
                time.sleep(0.5)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1100, "height": 900})
                page.goto(url + "/")
                expect(page.locator("#models-status")).to_contain_text("models loaded")
                page.evaluate(DROP, [list(files), list(files.values())])
                expect(page.locator("#status")).to_contain_text("Done:", timeout=300_000)
                page.locator('#results th[data-key="band_gap"] button').click()
                page.locator('#scatter circle.point[data-file="CoO-label-warning.cif"]').click()
                page.evaluate("window.scrollTo(0, 0)")
                page.locator('#scatter circle.point[data-file="MgO-rocksalt.cif"]').hover()
                page.screenshot(
                    path=str(OUT / "screening-page.png"),
                    clip={"x": 0, "y": 0, "width": 1100, "height": 1500},
                    full_page=True,
                )
                page.goto(url + "/docs")
                expect(page.locator(".opblock-summary-path").first).to_be_visible(timeout=60_000)
                page.screenshot(
                    path=str(OUT / "api-docs.png"), clip={"x": 0, "y": 0, "width": 1100, "height": 1100}, full_page=True
                )
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=60)
    for name in ("screening-page.png", "api-docs.png"):
        small_png(OUT / name)
        print(f"{OUT / name}: {(OUT / name).stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
