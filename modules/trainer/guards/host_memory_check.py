"""Before loading: does the run fit this machine's RAM? A run that cannot is refused with the host-memory plan's
numbers and the least change that fits (modules/memory/host.py), instead of being killed by the kernel later."""

from __future__ import annotations

import logging

log = logging.getLogger("wan_trainer")


def check_host_memory(config, processes: int) -> None:
    from modules.memory.host import build_host_plan, machine_ram_gib, refuse_if_ram_too_small
    from modules.registry import memory_facts_for

    ram = machine_ram_gib()
    try:
        plan = build_host_plan(config, memory_facts_for(config), processes)
    except Exception as error:  # noqa: BLE001 - a plan that cannot be made (unknown model) never stops a run
        log.warning("no host memory plan: %s", error)
        return
    warning = refuse_if_ram_too_small(plan, ram)  # raises HostMemoryError when loading or training cannot fit
    if warning:
        log.warning(warning)
