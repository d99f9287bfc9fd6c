"""What changed between two status views, in words: peers joining and leaving,
routes appearing and disappearing, models changing state. Pure."""

from __future__ import annotations


def describe_changes(old: dict | None, new: dict | None) -> list[str]:
    if new is None:
        return [] if old is None else ["lost the node agent"]
    out = []
    if old is None:  # the console (re)connected: what the node is now, as changes from nothing
        out.append("connected to the node agent")
        old = {"peers": [], "routes": [], "models": []}
    old_peers = {p["id"]: p for p in old.get("peers", [])}
    for peer in new.get("peers", []):
        before = old_peers.get(peer["id"])
        if before is None:
            out.append(f"{peer['role']} {peer['id'][:12]} joined")
        elif before["state"] != peer["state"]:
            out.append(f"{peer['role']} {peer['id'][:12]} is {peer['state']}")
    old_routes = {(r["model"], r["node_id"]) for r in old.get("routes", [])}
    new_routes = {(r["model"], r["node_id"]) for r in new.get("routes", [])}
    out += [f"route added: {m} on {n[:12]}" for m, n in sorted(new_routes - old_routes)]
    out += [f"route removed: {m} on {n[:12]}" for m, n in sorted(old_routes - new_routes)]
    old_models = {m["name"]: m["state"] for m in old.get("models", [])}
    out += [f"model {m['name']} is {m['state']}" for m in new.get("models", [])
            if old_models.get(m["name"]) != m["state"]]
    return out
