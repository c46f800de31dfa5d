"""results.json -> RESULTS.md (the table) and gap_by_step.png (the held-out gap over training steps per arm)."""

from __future__ import annotations

import json
import math
import os
import shutil


def collect(workdir: str, arms: list[str], descriptions: dict) -> dict:
    def read(name):
        with open(os.path.join(workdir, "eval", f"{name}.json"), encoding="utf-8") as f:
            return json.load(f)

    start = read("pretrain")
    rows = []
    for name in arms:
        r = read(name)
        steps = [{"iteration": 0, "gap": start["final"]["gap"]}] + [
            {"iteration": s["iteration"], "gap": s["gap"]} for s in r["gap_by_step"]]
        rows.append({"arm": name, "what": descriptions[name][0],
                     "blend": " + ".join(f"{w} {d}" for w, d in descriptions[name][1]),
                     "gap": r["final"]["gap"], "spoken_loss": r["final"]["spoken_loss"],
                     "written_loss": r["final"]["written_loss"], "targets": r["final"]["targets"],
                     "asr_wer": r["asr_wer"], "spoken_accuracy": r["probe"]["spoken_accuracy"],
                     "written_accuracy": r["probe"]["written_accuracy"], "probe_items": r["probe"]["items"],
                     "gap_by_step": steps, "heldout": r.get("heldout")})
    base = next((r["gap"] for r in rows if r["arm"] == "a"), None)
    for r in rows:
        r["gap_vs_a"] = r["gap"] / base if base not in (None, 0) and math.isfinite(base) else None
    return {"arms": rows, "text_lm": {"gap": start["final"]["gap"], "spoken_loss": start["final"]["spoken_loss"],
                                      "written_loss": start["final"]["written_loss"], "asr_wer": start["asr_wer"],
                                      "spoken_accuracy": start["probe"]["spoken_accuracy"],
                                      "written_accuracy": start["probe"]["written_accuracy"]}}


def verdicts(rows: list[dict]) -> list[str]:
    by = {r["arm"]: r for r in rows}
    out = []
    if "a" in by:
        base = by["a"]["gap"]
        for arm in ("b", "c", "d"):
            if arm not in by:
                continue
            if base <= 0:
                out.append(f"arm {arm} cuts the gap by at least half against arm a: not measurable, arm a has no "
                           f"positive gap ({base:.3f}); arm {arm}: {by[arm]['gap']:.3f}")
                continue
            ok = by[arm]["gap"] <= base / 2
            out.append(f"arm {arm} cuts the gap by at least half against arm a: {'yes' if ok else 'no'} "
                       f"({by[arm]['gap']:.3f} vs {base:.3f})")
    if "b" in by and "c" in by:
        ok = by["b"]["gap"] <= by["c"]["gap"]
        out.append(f"word level at least as good as sentence level (gap b <= c): {'yes' if ok else 'no'} "
                   f"({by['b']['gap']:.3f} vs {by['c']['gap']:.3f})")
    if "b" in by and "d" in by:
        ok = by["b"]["gap"] < by["d"]["gap"]
        out.append(f"more interleaved data better (gap b < d): {'yes' if ok else 'no'} "
                   f"({by['b']['gap']:.3f} vs {by['d']['gap']:.3f})")
    return out


def _pct(x) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.0f}%"


def _row(label: str, blend: str, r: dict, ratio: str) -> str:
    cells = [label, blend, f"{r['gap']:.3f}", ratio, f"{r['spoken_loss']:.3f}", f"{r['written_loss']:.3f}",
             f"{r['asr_wer']:.1f}", _pct(r["spoken_accuracy"]), _pct(r["written_accuracy"])]
    return "| " + " | ".join(cells) + " |"


def table(results: dict) -> str:
    header = ("| arm | data (blend weights) | gap (nats/token) | gap vs a | spoken loss | written loss | ASR WER % "
              "| probe spoken | probe written |")
    lines = [header, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
             _row("text LM (start)", "text only", results["text_lm"], "–")]
    for r in results["arms"]:
        ratio = "–" if r["gap_vs_a"] is None else f"{r['gap_vs_a']:.2f}x"
        lines.append(_row(f"{r['arm']}: {r['what']}", r["blend"], r, ratio))
    return "\n".join(lines)


def plot(results: dict, path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in results["arms"]:
        steps = r["gap_by_step"]
        ax.plot([s["iteration"] for s in steps], [s["gap"] for s in steps], marker="o", label=f"{r['arm']}: {r['what']}")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("training step of the arm (0 = the text LM)")
    ax.set_ylabel("held-out gap: spoken - written loss (nats/token)")
    ax.set_title("Modality gap over continued pre-training")
    ax.legend(fontsize=8)
    fig.tight_layout()
    from megatron_inserter.files import atomic_write

    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return path


def markdown(results: dict) -> str:
    s, hw = results["scale"], results["hardware"]
    heldout = results["arms"][0]["heldout"] if results["arms"] else None
    items = results["arms"][0]["probe_items"] if results["arms"] else 0
    total = sum(results["timings_s"].values())
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in results["timings_s"].items())
    explain = ("Gap: mean loss on the first text tokens after a held-out speech span minus the mean loss on the "
               f"same tokens after the same span written (held out: {heldout}). Probe: {items} held-out (word, "
               "instruction) pairs, greedy answers, exact match.")
    machine = (f"Hardware: {hw['cpu_count']} CPU cores ({hw['cpu']}), GPU: {hw['gpu'] or 'none'}; Python "
               f"{hw['python']}, torch {hw['torch']}. Wall time of the stages: {total / 60:.1f} min ({stages}).")
    parts = ["# Does interleaving close the gap? Results", "",
             f"Scale `{results['scale_name']}`, corpus `{s['corpus']}`, seed {results['seed']}.", "",
             "```", results["command"], "```", "", table(results), "", explain, "",
             "![gap over steps](gap_by_step.png)", "", "Against the targets:", "",
             *[f"- {v}" for v in verdicts(results["arms"])], "", machine, ""]
    return "\n".join(parts)


def write(workdir: str, results: dict, publish: str | None) -> None:
    from megatron_inserter.files import write_text_atomic

    plot(results, os.path.join(workdir, "gap_by_step.png"))
    write_text_atomic(os.path.join(workdir, "RESULTS.md"), markdown(results))
    if publish:
        os.makedirs(publish, exist_ok=True)
        for name in ("RESULTS.md", "gap_by_step.png", "results.json"):
            if os.path.isfile(os.path.join(workdir, name)):
                shutil.copyfile(os.path.join(workdir, name), os.path.join(publish, name))
