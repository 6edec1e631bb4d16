"""The simulation: SimPy drives the market's own MarketService on a simulated clock.

Time is integer milliseconds (env.now). Every happening is ONE SimPy timeout with a callback:
an arrival, a bid window's close (the market's next deadline), a job's completion, a provider's
failure, its detection, its repair. Nothing ticks per minute: a failed provider sends one last
heartbeat at the moment it fails (so billing stops there) and is reported silent at
failure + heartbeat timeout.

The simulator plays the tenants and the providers; the market (orders, bids, the auction and
its payment rule, leases, escrow, billing, liveness, re-orders) is marketplace.core, unchanged,
and each provider decides to bid or decline with the provider agent's own rule
(marketplace.core.bidding: placement, reservation of concrete GPUs, the price check).
The run's seed drives every draw, through one random.Random stream per process (World.streams:
arrivals, failures, auctions; the providers are drawn once from the seed's own), so a change in
how one process draws leaves the others' draws as they were; iteration is over lists and dicts
(insertion order), never sets, so a run is reproducible byte for byte.

One process per module, all acting on one `world.World` (clock, random stream, market,
providers, metrics): `arrivals` (tenants' jobs), `failures` (provider failures, detection,
repairs), `auctions` (orders, bids, awards), `jobs` (jobs running on their leases);
`simulation.Simulation` wires them together and runs them.
"""

from simulator.engine.simulation import Simulation, run_scenario

__all__ = ["Simulation", "run_scenario"]
