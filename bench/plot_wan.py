"""Plot tokens/s against RTT for the mesh, stock llama.cpp RPC and the ideal, from the JSON
bench/wan.py printed (or bench/results/latest.json), into a PNG (matplotlib, headless).

    .venv/bin/python bench/plot_wan.py RESULTS.json docs/wan-split.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(Path(sys.argv[1]).read_text())
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for key, label, style in (("split_wan_tokps", "mesh (QUIC tunnel)", "o-"),
                              ("stock_rpc_wan_tokps", "stock llama.cpp RPC (TCP)", "s-"),
                              ("ideal_wan_tokps", f"ideal: compute + {data['split_turns_per_token']} turns × RTT", "k--")):
        series = sorted((float(r), v) for r, v in data[key].items())
        xs, ys = [r for r, _ in series], [v for _, v in series]
        spreads = data.get(f"{key}_spread")
        if spreads:  # min–max of the repeated streams at each point
            low = [v - spreads[r]["min"] for r, v in sorted(((r, v) for r, v in data[key].items()), key=lambda x: float(x[0]))]
            high = [spreads[r]["max"] - v for r, v in sorted(((r, v) for r, v in data[key].items()), key=lambda x: float(x[0]))]
            ax.errorbar(xs, ys, yerr=[low, high], fmt=style, capsize=3, label=label)
        else:
            ax.plot(xs, ys, style, label=label)
    ax.set_xlabel("round-trip time between the two nodes (ms)")
    ax.set_ylabel("decode tokens/s")
    ax.set_title(f"2-node split of {data['model']} over emulated latency")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(sys.argv[2])


if __name__ == "__main__":
    main()
