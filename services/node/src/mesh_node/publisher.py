"""Listing this mesh in the directory (`--publish`, `--mesh-name`), signed with
the node's Ed25519 key, refreshed at half the listing's lifetime (by its digest
alone while it has not changed) and soon after the mesh changes, withdrawn on
clean shutdown and while `--max-clients` clients are connected.

Buddy mode (`--auto --mesh-name NAME` found no mesh and created one): everyone
ran the same command, so several nodes may have created a mesh of that name at
once. While this node is alone in its mesh it watches the directory; if another
mesh of the same name appears with a smaller mesh id (a rule every node applies
the same way), it joins that one instead, so they all end up in one mesh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from meshcore import __version__, directory_client as dc
from meshcore.membership import ALIVE
from meshcore.token import InviteToken

if TYPE_CHECKING:
    from meshcore.config import NodeConfig
    from meshcore.identity import Identity
    from mesh_node.mesh_link import MeshLink

log = logging.getLogger(__name__)
MIN_GAP_S = 2.0
BUDDY_CHECK_S = 2.0
BUDDY_RETRY_S = 600.0  # a listed mesh this node could not join is not tried again for this long


class Publisher:
    def __init__(self, config: "NodeConfig", identity: "Identity", link: "MeshLink") -> None:
        self.config = config
        self.identity = identity
        self.link = link
        self.member = link.member
        self.base = dc.directory_url(config.directory or None)
        self.listing_id: str | None = None
        self.failed: dict[str, float] = {}  # buddy mode: mesh id -> when it may be tried again
        self.switching = False              # buddy mode: trying another mesh (the member's key is that mesh's)

    def listing(self) -> dict:
        records = [r for r in self.member.membership.records.values() if r.state == ALIVE]
        nodes = [r for r in records if r.role == "node"]
        served = sorted({m for r in nodes for m in r.serving})
        on_disk = sorted({m for r in nodes for m in r.models_on_disk})
        mesh_id = self.member.mesh.mesh_id
        return {
            "token": self.link.state.token, "mesh_id": mesh_id,
            "name": self.config.mesh_name or f"mesh-{mesh_id[:8]}", "region": self.config.region,
            "models_served": served[:64], "models_wanted": sorted(set(on_disk) - set(served))[:64],
            "models_on_disk": on_disk[:256], "total_vram_gb": round(sum(r.vram_bytes for r in nodes) / (1 << 30), 2),
            "node_count": len(nodes), "client_count": len(records) - len(nodes),
            "max_clients": self.config.max_clients, "version": __version__,
        }

    def full(self, listing: dict) -> bool:
        return bool(self.config.max_clients) and listing["client_count"] >= self.config.max_clients

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._publish_loop())
            if self.config.buddy:
                tasks.create_task(self._buddy_loop())

    def owns(self) -> bool:
        """Whether this node still owns the mesh it is in (only the owner lists a mesh: a node
        that joined another one in buddy mode leaves the listing to that mesh's owner)."""
        return self.member.mesh.owner == self.identity.node_id

    async def _publish_loop(self) -> None:
        last: dict | None = None
        digest: str | None = None  # of the listed content, from directories that take refreshes by digest
        refresh_in = 0.0
        warned = False
        while True:
            if self.switching:  # the member holds another mesh's key for a moment: nothing to list
                await asyncio.sleep(MIN_GAP_S)
                continue
            if not self.owns():
                await self.withdraw()
                return
            listing = self.listing()
            try:
                if self.full(listing):
                    if self.listing_id:
                        await self.withdraw()
                        log.info("delisted: %d clients connected (--max-clients %d)", listing["client_count"],
                                 self.config.max_clients)
                    refresh_in = 60.0
                elif self.listing_id is None or listing != last or refresh_in <= 0:
                    reply = None
                    if self.listing_id is not None and listing == last and digest:
                        with contextlib.suppress(dc.DirectoryError):  # unchanged: send only its digest
                            reply = await asyncio.to_thread(dc.refresh, self.base, self.identity.private_key,
                                                            self.listing_id, digest)
                    if reply is None:
                        reply = await asyncio.to_thread(dc.publish, self.base, self.identity.private_key, listing)
                    digest = reply.get("digest")
                    if self.listing_id is None:
                        log.info("listed mesh %r in the directory %s", listing["name"], self.base)
                    self.listing_id, last, warned = reply["id"], listing, False
                    refresh_in = float(reply.get("expires_in", 120)) / 2
            except dc.DirectoryError as exc:
                if not warned:
                    log.warning("could not publish to the directory: %s (retrying)", exc)
                    warned = True
                refresh_in = 10.0
            started = asyncio.get_running_loop().time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(refresh_in):
                    await self.member.changes.wait(self.member.changes.seq)
            await asyncio.sleep(MIN_GAP_S)
            refresh_in -= asyncio.get_running_loop().time() - started

    async def withdraw(self) -> None:
        if self.listing_id is None:
            return
        listing_id, self.listing_id = self.listing_id, None
        with contextlib.suppress(dc.DirectoryError):
            await asyncio.to_thread(dc.withdraw, self.base, self.identity.private_key, listing_id)

    async def _buddy_loop(self) -> None:
        while True:
            await asyncio.sleep(BUDDY_CHECK_S)
            alone = not self.member.membership.alive_peers()
            if not alone:
                continue
            try:
                meshes = await asyncio.to_thread(dc.list_meshes, self.base, None, None, self.config.mesh_name)
            except dc.DirectoryError:
                continue
            mine = self.member.mesh.mesh_id
            now = asyncio.get_running_loop().time()
            older = sorted((m for m in meshes if m["mesh_id"] < mine and dc.has_room(m) and dc.token_ok(m)
                            and self.failed.get(m["mesh_id"], 0.0) <= now), key=lambda m: m["mesh_id"])
            if older:
                log.info("another mesh named %r exists (%s): joining it", self.config.mesh_name, older[0]["mesh_id"][:12])
                self.switching = True
                try:
                    switched = await self.link.switch_mesh(InviteToken.decode(older[0]["token"]))
                finally:
                    self.switching = False
                if switched:
                    await self.withdraw()  # the joined mesh's owner lists it; this node's own mesh is gone
                    return
                # Dead or lying (an address that does not answer, or refuses): not tried again
                # for a while; this node stays listed in its own mesh meanwhile.
                self.failed[older[0]["mesh_id"]] = now + BUDDY_RETRY_S
