//! Topologies as port graphs, plus their shortest-path route tables.
//!
//! Contract: nodes `0..hosts` are hosts (one port each, to their top-of-rack switch); the rest
//! are switches. Every link is two directed ports with a rate and a propagation delay. Routes
//! are all shortest paths: for each switch and each destination top-of-rack switch, the list of
//! output ports that bring the packet one hop closer (computed by BFS from every ToR, so any
//! topology built here gets ECMP for free). [`Graph::reroute`] recomputes the tables with some
//! ports marked dead (link and switch failures).

use std::collections::VecDeque;

use weir_base::{Duration, Rate};

use crate::scenario::Topology;

/// One direction of a link.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PortSpec {
    /// Node at the far end.
    pub(crate) peer: u32,
    /// Index of the reverse port at `peer`.
    pub(crate) peer_port: u16,
    pub(crate) rate: Rate,
    pub(crate) delay: Duration,
}

/// A built topology.
#[derive(Debug)]
pub(crate) struct Graph {
    pub(crate) hosts: u32,
    /// Ports of each node.
    pub(crate) ports: Vec<Vec<PortSpec>>,
    /// Index of each host's ToR in `tors`.
    pub(crate) host_tor: Vec<u32>,
    /// Port of the ToR that leads to each host.
    pub(crate) host_port: Vec<u16>,
    /// Node ids of the ToR switches.
    pub(crate) tors: Vec<u32>,
    /// `routes[node][tor]`: range into `route_ports` (empty for hosts).
    route_index: Vec<Vec<(u32, u16)>>,
    route_ports: Vec<u16>,
    /// `dist[tor][node]`: hops from `node` to ToR `tor` on the intact topology.
    dist: Vec<Vec<u16>>,
    /// Intra-server interconnect rate and latency.
    pub(crate) nvlink: (Rate, Duration),
}

impl Graph {
    /// Build a topology (the scenario was validated); `host_delay` is added to the
    /// propagation delay of every host link.
    pub(crate) fn build(t: &Topology, host_delay: Duration) -> Graph {
        let mut b = Builder {
            host_delay,
            ..Builder::default()
        };
        match *t {
            Topology::FatTree {
                k,
                link_gbps,
                link_delay_ns,
            } => {
                let (rate, delay) = (
                    Rate::from_gbps(link_gbps),
                    Duration::from_nanos(link_delay_ns),
                );
                let h = k / 2;
                let hosts = k * k * k / 4;
                b.nodes(hosts);
                let edge0 = hosts;
                let agg0 = edge0 + k * h;
                let core0 = agg0 + k * h;
                b.nodes(k * h * 2 + h * h);
                for pod in 0..k {
                    for e in 0..h {
                        let edge = edge0 + pod * h + e;
                        for i in 0..h {
                            b.link(pod * h * h + e * h + i, edge, rate, delay);
                        }
                    }
                }
                for pod in 0..k {
                    for e in 0..h {
                        for a in 0..h {
                            b.link(edge0 + pod * h + e, agg0 + pod * h + a, rate, delay);
                        }
                    }
                    for a in 0..h {
                        for c in 0..h {
                            b.link(agg0 + pod * h + a, core0 + a * h + c, rate, delay);
                        }
                    }
                }
                b.finish(hosts)
            }
            Topology::LeafSpine {
                leaves,
                spines,
                hosts_per_leaf,
                host_gbps,
                fabric_gbps,
                link_delay_ns,
            } => {
                let hosts = leaves * hosts_per_leaf;
                b.two_tier(
                    hosts,
                    leaves,
                    spines,
                    |h| h / hosts_per_leaf,
                    (Rate::from_gbps(host_gbps), Rate::from_gbps(fabric_gbps)),
                    Duration::from_nanos(link_delay_ns),
                );
                b.finish(hosts)
            }
            Topology::Rail {
                servers,
                gpus_per_server,
                servers_per_leaf,
                spines,
                host_gbps,
                fabric_gbps,
                link_delay_ns,
                nvlink_gbps,
                nvlink_latency_ns,
            } => {
                let g = gpus_per_server;
                let hosts = servers * g;
                let leaves = servers.div_ceil(servers_per_leaf) * g;
                // Leaf of (group, rail) is leaf index group·g + rail; host s·g + i is GPU i
                // of server s.
                b.two_tier(
                    hosts,
                    leaves,
                    spines,
                    |h| (h / g / servers_per_leaf) * g + h % g,
                    (Rate::from_gbps(host_gbps), Rate::from_gbps(fabric_gbps)),
                    Duration::from_nanos(link_delay_ns),
                );
                b.nvlink = (
                    Rate::from_gbps(nvlink_gbps),
                    Duration::from_nanos(nvlink_latency_ns),
                );
                b.finish(hosts)
            }
        }
    }

    /// Recompute the route tables using only ports for which `up(node, port)` holds (a link
    /// is usable when both directions are up).
    pub(crate) fn reroute(&mut self, up: &dyn Fn(u32, u16) -> bool) {
        let dist = bfs(&self.ports, self.hosts, &self.tors, up);
        let (ri, rp) = route_tables(&self.ports, self.hosts, &dist, up);
        self.route_index = ri;
        self.route_ports = rp;
    }

    /// Equal-cost output ports of switch `node` towards ToR index `tor`.
    pub(crate) fn next_hops(&self, node: u32, tor: u32) -> &[u16] {
        let Some(&(start, len)) = self
            .route_index
            .get(node as usize)
            .and_then(|r| r.get(tor as usize))
        else {
            return &[];
        };
        let start = start as usize;
        self.route_ports
            .get(start..start + usize::from(len))
            .unwrap_or(&[])
    }

    /// Links on a shortest path from host `src` to host `dst`.
    pub(crate) fn path_links(&self, src: u32, dst: u32) -> u64 {
        let (ts, td) = (self.host_tor[src as usize], self.host_tor[dst as usize]);
        let tor_node = self.tors[ts as usize];
        u64::from(self.dist[td as usize][tor_node as usize]) + 2
    }
}

#[derive(Default)]
struct Builder {
    ports: Vec<Vec<PortSpec>>,
    host_delay: Duration,
    nvlink: (Rate, Duration),
}

impl Builder {
    fn nodes(&mut self, n: u32) {
        self.ports.extend((0..n).map(|_| Vec::new()));
    }

    /// A link between `a` and `b` (both directions).
    fn link(&mut self, a: u32, b: u32, rate: Rate, delay: Duration) {
        let (pa, pb) = (
            self.ports[b as usize].len() as u16,
            self.ports[a as usize].len() as u16,
        );
        self.ports[a as usize].push(PortSpec {
            peer: b,
            peer_port: pa,
            rate,
            delay,
        });
        self.ports[b as usize].push(PortSpec {
            peer: a,
            peer_port: pb,
            rate,
            delay,
        });
    }

    /// A two-tier Clos: nodes `0..hosts` are hosts, then `leaves` leaf switches, then `spines`
    /// spine switches. Host `h` links to leaf `leaf_of(h)` at `rates.0` (hosts in order), then
    /// every leaf links to every spine at `rates.1` (leaf-major), all with `delay`.
    fn two_tier(
        &mut self,
        hosts: u32,
        leaves: u32,
        spines: u32,
        leaf_of: impl Fn(u32) -> u32,
        rates: (Rate, Rate),
        delay: Duration,
    ) {
        self.nodes(hosts + leaves + spines);
        for h in 0..hosts {
            self.link(h, hosts + leaf_of(h), rates.0, delay);
        }
        for l in 0..leaves {
            for s in 0..spines {
                self.link(hosts + l, hosts + leaves + s, rates.1, delay);
            }
        }
    }

    fn finish(self, hosts: u32) -> Graph {
        let mut ports = self.ports;
        // Host links carry the host (NIC + PCIe) delay on top of propagation, both ways.
        for h in 0..hosts as usize {
            for i in 0..ports[h].len() {
                let p = ports[h][i];
                ports[h][i].delay = p.delay.saturating_add(self.host_delay);
                let back = &mut ports[p.peer as usize][usize::from(p.peer_port)];
                back.delay = back.delay.saturating_add(self.host_delay);
            }
        }
        let mut tors: Vec<u32> = Vec::new();
        let mut host_tor = Vec::with_capacity(hosts as usize);
        let mut host_port = Vec::with_capacity(hosts as usize);
        for h in 0..hosts {
            let tor = ports[h as usize][0].peer;
            let idx = match tors.iter().position(|&t| t == tor) {
                Some(i) => i,
                None => {
                    tors.push(tor);
                    tors.len() - 1
                }
            };
            host_tor.push(idx as u32);
            let p = ports[tor as usize]
                .iter()
                .position(|p| p.peer == h)
                .unwrap_or(0);
            host_port.push(p as u16);
        }
        let all = |_: u32, _: u16| true;
        let dist = bfs(&ports, hosts, &tors, &all);
        let (route_index, route_ports) = route_tables(&ports, hosts, &dist, &all);
        Graph {
            hosts,
            ports,
            host_tor,
            host_port,
            tors,
            route_index,
            route_ports,
            dist,
            nvlink: self.nvlink,
        }
    }
}

/// Hop counts from every node to every ToR over usable switch links (hosts never forward).
fn bfs(
    ports: &[Vec<PortSpec>],
    hosts: u32,
    tors: &[u32],
    up: &dyn Fn(u32, u16) -> bool,
) -> Vec<Vec<u16>> {
    let n = ports.len();
    let mut dist = Vec::with_capacity(tors.len());
    for &tor in tors {
        let mut d = vec![u16::MAX; n];
        d[tor as usize] = 0;
        let mut q = VecDeque::from([tor]);
        while let Some(u) = q.pop_front() {
            for (i, p) in ports[u as usize].iter().enumerate() {
                let v = p.peer as usize;
                if v >= hosts as usize
                    && d[v] == u16::MAX
                    && up(u, i as u16)
                    && up(p.peer, p.peer_port)
                {
                    d[v] = d[u as usize].saturating_add(1);
                    q.push_back(p.peer);
                }
            }
        }
        dist.push(d);
    }
    dist
}

/// For each switch and ToR, the usable output ports one hop closer to the ToR.
fn route_tables(
    ports: &[Vec<PortSpec>],
    hosts: u32,
    dist: &[Vec<u16>],
    up: &dyn Fn(u32, u16) -> bool,
) -> (Vec<Vec<(u32, u16)>>, Vec<u16>) {
    let mut route_index = vec![Vec::new(); ports.len()];
    let mut route_ports = Vec::new();
    for (node, ps) in ports.iter().enumerate().skip(hosts as usize) {
        for d in dist {
            let start = route_ports.len() as u32;
            let here = d[node];
            for (i, p) in ps.iter().enumerate() {
                let v = p.peer as usize;
                if v >= hosts as usize
                    && here != u16::MAX
                    && d[v].saturating_add(1) == here
                    && up(node as u32, i as u16)
                    && up(p.peer, p.peer_port)
                {
                    route_ports.push(i as u16);
                }
            }
            let len = (route_ports.len() as u32 - start) as u16;
            route_index[node].push((start, len));
        }
    }
    (route_index, route_ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fat_tree_k4_shape_and_routes() {
        let g = Graph::build(
            &Topology::FatTree {
                k: 4,
                link_gbps: 100,
                link_delay_ns: 1000,
            },
            Duration::ZERO,
        );
        assert_eq!(g.hosts, 16);
        assert_eq!(g.ports.len(), 16 + 8 + 8 + 4);
        assert_eq!(g.tors.len(), 8);
        // Every switch has radix k.
        assert!(g.ports[16..].iter().all(|p| p.len() == 4));
        // Same ToR: 2 links; same pod: 4; across pods: 6.
        assert_eq!(g.path_links(0, 1), 2);
        assert_eq!(g.path_links(0, 2), 4);
        assert_eq!(g.path_links(0, 4), 6);
        // An edge switch has 2 uplinks towards a remote ToR; a core switch exactly 1 port.
        let remote = g.host_tor[4];
        assert_eq!(g.next_hops(16, remote).len(), 2);
        assert_eq!(g.next_hops(32, remote).len(), 1);
    }

    #[test]
    fn leaf_spine_routes_over_every_spine() {
        let mut g = Graph::build(
            &Topology::LeafSpine {
                leaves: 4,
                spines: 3,
                hosts_per_leaf: 2,
                host_gbps: 100,
                fabric_gbps: 100,
                link_delay_ns: 500,
            },
            Duration::ZERO,
        );
        assert_eq!(g.hosts, 8);
        assert_eq!(g.next_hops(8, g.host_tor[7]).len(), 3);
        assert_eq!(g.path_links(0, 7), 4);
        // Leaf 8's link to spine 12 (its port 2 after two hosts) fails: two next hops left.
        let dead = |n: u32, p: u16| !(n == 8 && p == 2 || n == 12 && p == 0);
        g.reroute(&dead);
        assert_eq!(g.next_hops(8, g.host_tor[7]), &[3, 4]);
        // The spine reaches leaf 8 only through a detour over another leaf now.
        let back = g.next_hops(12, g.host_tor[0]);
        assert!(!back.is_empty() && !back.contains(&0), "{back:?}");
    }

    #[test]
    fn rail_topology_attaches_gpu_i_to_rail_i() {
        let g = Graph::build(
            &Topology::Rail {
                servers: 4,
                gpus_per_server: 2,
                servers_per_leaf: 2,
                spines: 2,
                host_gbps: 400,
                fabric_gbps: 400,
                link_delay_ns: 500,
                nvlink_gbps: 3600,
                nvlink_latency_ns: 500,
            },
            Duration::ZERO,
        );
        assert_eq!(g.hosts, 8);
        // 2 groups × 2 rails = 4 leaves, then 2 spines.
        assert_eq!(g.ports.len(), 8 + 4 + 2);
        // GPU 1 of server 0 (host 1) and GPU 1 of server 1 (host 3) share the rail-1 leaf.
        assert_eq!(g.ports[1][0].peer, 9);
        assert_eq!(g.ports[3][0].peer, 9);
        assert_eq!(g.path_links(1, 3), 2);
        // GPU 0 of server 0 to GPU 1 of server 2: leaf, spine, leaf.
        assert_eq!(g.path_links(0, 5), 4);
        // Every port knows its reverse.
        for (n, ps) in g.ports.iter().enumerate() {
            for (i, p) in ps.iter().enumerate() {
                let back = g.ports[p.peer as usize][usize::from(p.peer_port)];
                assert_eq!((back.peer, back.peer_port), (n as u32, i as u16));
            }
        }
    }
}
