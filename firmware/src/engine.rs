//! The engine's core: clients' submission rings in, one transport [`Endpoint`] for all of
//! them, clients' completion rings out. No clock, sockets or threads — the placement (a
//! thread of the client, or the `weir engine` daemon) passes time in, moves packets between
//! the endpoint and its datapath, and rings doorbells.
//!
//! Each client sees only its own handles: connections and regions are numbered per client
//! (a slot in the low 16 bits, a generation above it, so a stale handle does not name the
//! slot's next occupant), registrations must fall inside memory segments the placement
//! attached for that client, and listen keys route accepted connections to exactly one
//! client. Whatever a client writes into its submission ring is decoded and checked here; a
//! bad descriptor completes with an error status, and a client that corrupts its rings or
//! stops reading completions is marked broken (the placement detaches it, closing its
//! connections).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::ptr::NonNull;

use weir_base::Instant;
use weir_transport::{CompletionKind, ConnId, Endpoint, Event, RegionId, WorkRequest, WrError};

use crate::desc::{Cqe, CqeKind, DESC_LEN, Op, Sqe, Status};
use crate::ring::{Consumer, Producer, RingError};

/// Limits of an [`Engine`].
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Clients attached at once (at most 65,535).
    pub max_clients: usize,
    /// Connections per client (at most 65,535).
    pub max_conns: usize,
    /// Registered regions per client (at most 65,535).
    pub max_regions: usize,
    /// Memory segments per client.
    pub max_segments: usize,
    /// Listens per client (a range of keys counts once).
    pub max_listen_keys: usize,
    /// Completions held for a client whose completion ring is full; one more marks it broken.
    pub max_backlog: usize,
    /// Submissions taken from one client per [`Engine::submit`] call, so one busy client
    /// cannot starve the others.
    pub submit_batch: usize,
    /// Bytes of staging memory the engine allocates per client for regions in foreign
    /// memory ([`Engine::add_foreign_segment`]): one shadow of each such region.
    pub max_shadow_bytes: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_clients: 1024,
            max_conns: 65_535,
            max_regions: 65_535,
            max_segments: 1024,
            max_listen_keys: 64,
            max_backlog: 1 << 16,
            submit_batch: 64,
            max_shadow_bytes: 4 << 30,
        }
    }
}

/// A client of the engine (an index; valid until [`Engine::detach`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u16);

/// Why a client was marked broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// Its rings were corrupted.
    Ring(RingError),
    /// It stopped reading completions: more than `max_backlog` waited.
    CompletionOverflow,
}

/// Why attaching failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachError {
    /// `max_clients` are attached.
    TooManyClients,
    /// A ring's slots are not [`DESC_LEN`] bytes.
    BadRing,
}

/// Engine counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Submissions taken from clients' rings.
    pub submissions: u64,
    /// Of those, refused (bad bytes, handles, bounds, limits).
    pub refused: u64,
    /// Completions written to clients' rings.
    pub completions: u64,
    /// Completions that waited for space in a full completion ring.
    pub backlogged: u64,
    /// Accepted connections nobody listened for (rejected).
    pub unrouted_accepts: u64,
    /// Endpoint events for connections or requests no client owns any more (dropped).
    pub orphan_events: u64,
    /// Clients marked broken.
    pub broken_clients: u64,
}

impl core::ops::AddAssign for EngineStats {
    /// Add another engine's counters (a daemon's loops, say).
    fn add_assign(&mut self, o: EngineStats) {
        self.submissions += o.submissions;
        self.refused += o.refused;
        self.completions += o.completions;
        self.backlogged += o.backlogged;
        self.unrouted_accepts += o.unrouted_accepts;
        self.orphan_events += o.orphan_events;
        self.broken_clients += o.broken_clients;
    }
}

/// A table of per-client handles: slot in the low 16 bits, generation above it.
#[derive(Debug)]
struct Handles<T> {
    slots: Vec<(u16, Option<T>)>,
    free: Vec<u16>,
    limit: usize,
    live: usize,
}

impl<T> Handles<T> {
    fn new(limit: usize) -> Self {
        Handles {
            slots: Vec::new(),
            free: Vec::new(),
            limit: limit.min(u16::MAX as usize),
            live: 0,
        }
    }

    fn insert(&mut self, v: T) -> Option<u32> {
        if self.live >= self.limit {
            return None;
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                let s = u16::try_from(self.slots.len()).ok()?;
                self.slots.push((0, None));
                s
            }
        };
        let e = &mut self.slots[slot as usize];
        // Generations start at 1, so handle 0 is never valid.
        e.0 = e.0.wrapping_add(1).max(1);
        e.1 = Some(v);
        self.live += 1;
        Some(u32::from(e.0) << 16 | u32::from(slot))
    }

    fn get(&self, h: u32) -> Option<&T> {
        let (g, s) = ((h >> 16) as u16, (h & 0xffff) as usize);
        match self.slots.get(s) {
            Some((gen_, Some(v))) if *gen_ == g => Some(v),
            _ => None,
        }
    }

    fn get_mut(&mut self, h: u32) -> Option<&mut T> {
        let (g, s) = ((h >> 16) as u16, (h & 0xffff) as usize);
        match self.slots.get_mut(s) {
            Some((gen_, Some(v))) if *gen_ == g => Some(v),
            _ => None,
        }
    }

    fn remove(&mut self, h: u32) -> Option<T> {
        let (g, s) = ((h >> 16) as u16, (h & 0xffff) as usize);
        match self.slots.get_mut(s) {
            Some((gen_, v @ Some(_))) if *gen_ == g => {
                self.free.push(s as u16);
                self.live -= 1;
                v.take()
            }
            _ => None,
        }
    }

    fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.free.clear();
        self.live = 0;
        self.slots.drain(..).filter_map(|(_, v)| v)
    }
}

#[derive(Debug)]
struct ConnSlot {
    id: ConnId,
    /// The cookie of the connect still waiting for its handshake.
    connecting: Option<u64>,
}

/// A client's memory that the engine cannot address: it copies through it, as a DPU's DMA
/// engine reaches host memory. The daemon's is the client process's `/proc/<pid>/mem`,
/// handed over by the client itself, so it names that process's memory and no other.
pub trait ForeignMemory: Send + core::fmt::Debug {
    /// Copy the client's bytes at `addr` into `dst`; false unless every byte was read.
    fn read(&mut self, addr: u64, dst: &mut [u8]) -> bool;
    /// Copy `src` to the client's address `addr`; false unless every byte was written.
    fn write(&mut self, addr: u64, src: &[u8]) -> bool;
}

#[derive(Clone, Copy, Debug)]
enum Segment {
    /// Memory the engine addresses directly.
    Mapped { ptr: NonNull<u8>, len: u64 },
    /// Every address of the engine's own process, offsets being addresses (a client in the
    /// engine's process: [`Engine::add_address_space`]).
    AddressSpace,
    /// The client's foreign memory, offsets being its addresses.
    Foreign,
}

/// Page-aligned, zeroed engine memory standing in for a region of foreign memory: sends
/// are copied into it before they are posted, receives copied out of it when they complete.
struct Shadow {
    ptr: NonNull<u8>,
    /// Bytes allocated.
    len: usize,
    /// Bytes of the region it stands for now (at most `len`: a shadow is reused).
    used: u64,
    /// The region's address in the client.
    addr: u64,
}

impl Shadow {
    fn layout(len: usize) -> Option<core::alloc::Layout> {
        core::alloc::Layout::from_size_align(len.max(1), 4096).ok()
    }

    /// `None` when the allocator has no memory for it.
    fn new(len: usize, addr: u64) -> Option<Shadow> {
        let layout = Shadow::layout(len)?;
        // SAFETY: the layout's size is at least 1.
        let ptr = NonNull::new(unsafe { alloc::alloc::alloc_zeroed(layout) })?;
        Some(Shadow {
            ptr,
            len,
            used: len as u64,
            addr,
        })
    }

    /// Bytes `offset..offset + len` of the region, if inside.
    fn range(&mut self, offset: u64, len: u64) -> Option<&mut [u8]> {
        let end = offset.checked_add(len)?;
        if end > self.used {
            return None;
        }
        // SAFETY: inside the allocation, which `self` owns; `&mut self` makes it unique.
        Some(unsafe {
            core::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset as usize), len as usize)
        })
    }
}

impl Drop for Shadow {
    fn drop(&mut self) {
        if let Some(l) = Shadow::layout(self.len) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { alloc::alloc::dealloc(self.ptr.as_ptr(), l) };
        }
    }
}

impl core::fmt::Debug for Shadow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Shadow({} bytes of {:#x})", self.len, self.addr)
    }
}

#[derive(Debug)]
struct RegionSlot {
    id: RegionId,
    /// For a region in foreign memory: the engine's copy.
    shadow: Option<Shadow>,
}

/// An outstanding request: its owner, its cookie, and for a receive into foreign memory
/// where its bytes go when it completes (region handle, offset).
#[derive(Clone, Copy, Debug)]
struct Outstanding {
    client: u16,
    user: u64,
    copy_out: Option<(u32, u64)>,
}

#[derive(Debug)]
struct Client {
    sq: Consumer,
    cq: Producer,
    backlog: VecDeque<Cqe>,
    conns: Handles<ConnSlot>,
    regions: Handles<RegionSlot>,
    segments: Vec<Segment>,
    foreign: Option<alloc::boxed::Box<dyn ForeignMemory>>,
    /// Bytes of shadows allocated for it (in use and spare).
    shadow_bytes: u64,
    /// Shadows of deregistered regions, kept for the next registrations: a client that
    /// registers a buffer per operation (a communicator's tensors) would otherwise make the
    /// engine allocate and fault in fresh memory for each.
    spare_shadows: Vec<Shadow>,
    listen_keys: Vec<u64>,
    broken: Option<Broken>,
    /// Completions were pushed into its ring since the last [`Engine::flush`] (which then
    /// checks, once, whether the consumer sleeps).
    pushed: bool,
}

/// Spare shadows kept per client.
const SPARE_SHADOWS: usize = 8;

impl Client {
    /// A shadow of at least `n` bytes for a region at `addr`: a spare no more than twice as
    /// large, else a new one within `budget` bytes of shadows (spares freed to make room).
    fn shadow_for(&mut self, n: usize, addr: u64, budget: u64) -> Option<Shadow> {
        let fit = self
            .spare_shadows
            .iter()
            .enumerate()
            .filter(|(_, s)| s.len >= n && s.len / 2 <= n)
            .min_by_key(|(_, s)| s.len)
            .map(|(i, _)| i);
        if let Some(i) = fit {
            let mut sh = self.spare_shadows.swap_remove(i);
            sh.addr = addr;
            return Some(sh);
        }
        while self.shadow_bytes.saturating_add(n as u64) > budget {
            let sh = self.spare_shadows.pop()?;
            self.shadow_bytes -= sh.len as u64;
        }
        let sh = Shadow::new(n, addr)?;
        self.shadow_bytes += sh.len as u64;
        Some(sh)
    }

    /// Keep `sh` (no longer a region's) for later registrations, or free it.
    fn keep_spare(&mut self, sh: Shadow) {
        if self.spare_shadows.len() < SPARE_SHADOWS {
            self.spare_shadows.push(sh);
        } else {
            self.shadow_bytes -= sh.len as u64;
        }
    }
}

/// The engine core (module docs).
#[derive(Debug)]
pub struct Engine {
    ep: Endpoint,
    cfg: EngineConfig,
    clients: Vec<Option<Client>>,
    /// Endpoint connection → (client, handle).
    conn_owner: BTreeMap<u32, (u16, u32)>,
    /// Outstanding request → its owner.
    wr_owner: BTreeMap<u64, Outstanding>,
    /// Listen ranges: first key → (last key, client). Ranges never overlap.
    listeners: BTreeMap<u64, (u64, u16)>,
    /// Clients marked broken and not detached yet (the placement checks every round).
    broken: Vec<ClientId>,
    stats: EngineStats,
}

// SAFETY: the raw segment pointers name memory the placement attached and keeps valid (see
// `Engine::add_segment`); the engine only hands them to the endpoint, which the placement
// drives from one thread at a time.
unsafe impl Send for Engine {}

fn op_kind(op: &Op) -> CqeKind {
    match op {
        Op::Connect { .. } => CqeKind::Connected,
        Op::Register { .. } => CqeKind::Registered,
        Op::Send { .. } => CqeKind::Send,
        Op::Recv { .. } => CqeKind::Recv,
        Op::Write { .. } => CqeKind::Write,
        Op::Stats { .. } => CqeKind::Stats,
        _ => CqeKind::Done,
    }
}

impl Engine {
    /// An engine serving clients through `ep` (whose listening the engine turns on while any
    /// client listens).
    pub fn new(ep: Endpoint, cfg: EngineConfig) -> Engine {
        Engine {
            ep,
            cfg,
            clients: Vec::new(),
            conn_owner: BTreeMap::new(),
            wr_owner: BTreeMap::new(),
            listeners: BTreeMap::new(),
            broken: Vec::new(),
            stats: EngineStats::default(),
        }
    }

    /// The transport endpoint, for the placement's datapath (receive, transmit, timers).
    pub fn endpoint(&mut self) -> &mut Endpoint {
        &mut self.ep
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Clients attached.
    pub fn clients(&self) -> usize {
        self.clients.iter().flatten().count()
    }

    /// Attach a client by its two rings (slots of [`DESC_LEN`] bytes).
    pub fn attach(&mut self, sq: Consumer, cq: Producer) -> Result<ClientId, AttachError> {
        if sq.slot_len() != DESC_LEN || cq.slot_len() != DESC_LEN {
            return Err(AttachError::BadRing);
        }
        let slot = match self.clients.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.clients.len() < self.cfg.max_clients.min(u16::MAX as usize) => {
                self.clients.push(None);
                self.clients.len() - 1
            }
            None => return Err(AttachError::TooManyClients),
        };
        self.clients[slot] = Some(Client {
            sq,
            cq,
            backlog: VecDeque::new(),
            conns: Handles::new(self.cfg.max_conns),
            regions: Handles::new(self.cfg.max_regions),
            segments: Vec::new(),
            foreign: None,
            shadow_bytes: 0,
            spare_shadows: Vec::new(),
            listen_keys: Vec::new(),
            broken: None,
            pushed: false,
        });
        Ok(ClientId(slot as u16))
    }

    /// Give `client` a memory segment it may register regions in; returns its number (the
    /// `segment` of [`Op::Register`]). `None`: no such client, or too many segments.
    ///
    /// # Safety
    /// `len` bytes at `ptr` must stay valid for reads and writes until the client is
    /// detached (peers' data lands there while regions in it are registered).
    pub unsafe fn add_segment(
        &mut self,
        client: ClientId,
        ptr: NonNull<u8>,
        len: u64,
    ) -> Option<u32> {
        self.push_segment(client, Segment::Mapped { ptr, len })
    }

    /// Give `client` its whole address space as a segment, offsets being addresses: for a
    /// client in the engine's own process, which registers memory it owns by pointer (an
    /// NCCL plugin's `regMr`). Returns the segment's number.
    ///
    /// # Safety
    /// Every range the client registers in it must stay valid for reads and writes while
    /// registered: the client is trusted with the process's memory, as any code in it is.
    pub unsafe fn add_address_space(&mut self, client: ClientId) -> Option<u32> {
        self.push_segment(client, Segment::AddressSpace)
    }

    /// Give `client` a segment of memory the engine reaches only through `mem` (offsets
    /// being the client's addresses, as in a process the daemon serves). Regions in it get
    /// an engine-side shadow (at most `max_shadow_bytes` in all): a send is copied in when
    /// posted, a receive copied out when it completes; peers may not write into them. At
    /// most one per client.
    pub fn add_foreign_segment(
        &mut self,
        client: ClientId,
        mem: alloc::boxed::Box<dyn ForeignMemory>,
    ) -> Option<u32> {
        let c = self.client_mut(client)?;
        if c.foreign.is_some() {
            return None;
        }
        c.foreign = Some(mem);
        let n = self.push_segment(client, Segment::Foreign);
        if n.is_none()
            && let Some(c) = self.client_mut(client)
        {
            c.foreign = None;
        }
        n
    }

    fn push_segment(&mut self, client: ClientId, seg: Segment) -> Option<u32> {
        let max = self.cfg.max_segments;
        let c = self.client_mut(client)?;
        if c.segments.len() >= max {
            return None;
        }
        c.segments.push(seg);
        Some(c.segments.len() as u32 - 1)
    }

    /// Why `client` is broken, if it is.
    pub fn broken(&self, client: ClientId) -> Option<Broken> {
        self.clients
            .get(client.0 as usize)
            .and_then(Option::as_ref)
            .and_then(|c| c.broken)
    }

    /// Clients marked broken (to detach).
    pub fn broken_clients(&self) -> Vec<ClientId> {
        self.broken.clone()
    }

    /// Remove a client: its connections close (peers are told), its regions are
    /// deregistered, its listen keys freed; completions still due to it are dropped. Returns
    /// the rings' handles so the placement can release their memory.
    pub fn detach(&mut self, now: Instant, client: ClientId) -> Option<(Consumer, Producer)> {
        let mut c = self.clients.get_mut(client.0 as usize)?.take()?;
        self.broken.retain(|&b| b != client);
        for slot in c.conns.drain() {
            self.conn_owner.remove(&slot.id.0);
            self.ep.close(now, slot.id);
        }
        for region in c.regions.drain() {
            self.ep.deregister(now, region.id);
        }
        for key in &c.listen_keys {
            self.listeners.remove(key);
            self.ep.revoke(*key);
        }
        self.wr_owner.retain(|_, o| o.client != client.0);
        self.update_listening();
        Some((c.sq, c.cq))
    }

    fn client_mut(&mut self, id: ClientId) -> Option<&mut Client> {
        self.clients.get_mut(id.0 as usize).and_then(Option::as_mut)
    }

    fn update_listening(&mut self) {
        self.ep.listen(!self.listeners.is_empty());
    }

    /// Take up to `submit_batch` submissions from every client and carry them out. Returns
    /// how many were taken. A client whose completions are backlogged is skipped until it
    /// reads them (each submission produces one completion).
    pub fn submit(&mut self, now: Instant) -> usize {
        let mut taken = 0;
        for i in 0..self.clients.len() {
            let batch = self.cfg.submit_batch;
            for _ in 0..batch {
                let Some(c) = self.clients[i].as_mut() else {
                    break;
                };
                if c.broken.is_some() || !c.backlog.is_empty() {
                    break;
                }
                let mut b = [0u8; DESC_LEN];
                match c.sq.pop(&mut b) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        self.mark_broken(i, Broken::Ring(e));
                        break;
                    }
                }
                taken += 1;
                self.stats.submissions += 1;
                let cqe = match Sqe::decode(&b) {
                    Ok(sqe) => self.execute(now, i as u16, sqe),
                    Err(_) => Some(Cqe::new(
                        u64::from_le_bytes(b[8..16].try_into().unwrap_or_default()),
                        CqeKind::Done,
                        Status::BadDescriptor,
                    )),
                };
                if let Some(cqe) = cqe {
                    if cqe.status != Status::Ok {
                        self.stats.refused += 1;
                    }
                    self.complete(i as u16, cqe);
                }
            }
        }
        taken
    }

    /// Carry out one decoded submission of client `ci`; the completion to write now, if any
    /// (connects and posted requests complete later, from endpoint events).
    fn execute(&mut self, now: Instant, ci: u16, sqe: Sqe) -> Option<Cqe> {
        let user = sqe.user;
        let fail = |s: Status| Some(Cqe::new(user, op_kind(&sqe.op), s));
        let c = self.clients[ci as usize].as_mut()?;
        match sqe.op {
            Op::Nop => Some(Cqe::new(user, CqeKind::Done, Status::Ok)),
            Op::Connect {
                remote,
                user_data,
                secret,
            } => {
                let id = match secret {
                    Some(s) => self.ep.connect_authenticated(now, remote, user_data, s),
                    None => self.ep.connect(now, remote, user_data),
                };
                let Some(h) = c.conns.insert(ConnSlot {
                    id,
                    connecting: Some(user),
                }) else {
                    self.ep.close(now, id);
                    return fail(Status::TooMany);
                };
                self.conn_owner.insert(id.0, (ci, h));
                None
            }
            Op::Listen { key, secret, span } => {
                // Decoding refused a range past the last key and a secret with a range.
                let last = key.saturating_add(u64::from(span.max(1)) - 1);
                // The range already held as is (by this client) is a repeat; any other overlap
                // with a held range is refused.
                let same = self.listeners.get(&key) == Some(&(last, ci));
                if !same {
                    let before = self.listeners.range(..=last).next_back();
                    if before.is_some_and(|(_, &(end, _))| end >= key) {
                        return fail(Status::InUse);
                    }
                    if c.listen_keys.len() >= self.cfg.max_listen_keys {
                        return fail(Status::TooMany);
                    }
                    c.listen_keys.push(key);
                    self.listeners.insert(key, (last, ci));
                }
                match secret {
                    Some(s) => self.ep.admit(key, s),
                    None => self.ep.admit_open_range(key, last),
                }
                self.update_listening();
                Some(Cqe::new(user, CqeKind::Done, Status::Ok))
            }
            Op::Unlisten { key } => {
                if self.listeners.get(&key).map(|&(_, owner)| owner) != Some(ci) {
                    return fail(Status::UnknownConnection);
                }
                self.listeners.remove(&key);
                c.listen_keys.retain(|&k| k != key);
                self.ep.revoke(key);
                self.update_listening();
                Some(Cqe::new(user, CqeKind::Done, Status::Ok))
            }
            Op::Close { conn } => {
                let Some(slot) = c.conns.remove(conn) else {
                    return fail(Status::UnknownConnection);
                };
                self.conn_owner.remove(&slot.id.0);
                // Requests still outstanding complete with `Closed` from the endpoint's
                // events, which arrive after this (the owner map still has them).
                self.ep.close(now, slot.id);
                self.route_events(now);
                let mut cqe = Cqe::new(user, CqeKind::Done, Status::Ok);
                cqe.conn = conn;
                Some(cqe)
            }
            Op::Stats { conn } => {
                let Some(slot) = c.conns.get(conn) else {
                    return fail(Status::UnknownConnection);
                };
                let Some(st) = self.ep.conn_stats(slot.id) else {
                    return fail(Status::NotConnected);
                };
                Some(Cqe::with_counters(user, conn, &(&st).into()))
            }
            Op::Register {
                segment,
                offset,
                len,
                remote_write,
            } => {
                let Some(seg) = c.segments.get(segment as usize).copied() else {
                    return fail(Status::UnknownRegion);
                };
                let Some(end) = offset.checked_add(len) else {
                    return fail(Status::OutOfBounds);
                };
                if c.regions.live >= c.regions.limit {
                    return fail(Status::TooMany);
                }
                let (ptr, shadow) = match seg {
                    Segment::Mapped { ptr, len: seg_len } => {
                        if end > seg_len {
                            return fail(Status::OutOfBounds);
                        }
                        // SAFETY: the range lies inside a segment the placement promised
                        // valid until the client detaches, and detaching deregisters every
                        // region first.
                        (unsafe { ptr.add(offset as usize) }, None)
                    }
                    Segment::AddressSpace => {
                        if usize::try_from(end).is_err() {
                            return fail(Status::OutOfBounds);
                        }
                        let Some(ptr) = NonNull::new(offset as usize as *mut u8) else {
                            return fail(Status::OutOfBounds);
                        };
                        (ptr, None)
                    }
                    Segment::Foreign => {
                        if remote_write {
                            return fail(Status::Unsupported);
                        }
                        let Ok(n) = usize::try_from(len) else {
                            return fail(Status::OutOfBounds);
                        };
                        // Whether the client's range is there at all: its first and last
                        // byte (the rest is found at each copy).
                        let mut probe = [0u8; 1];
                        let mapped = len == 0
                            || c.foreign.as_mut().is_some_and(|mem| {
                                mem.read(offset, &mut probe) && mem.read(end - 1, &mut probe)
                            });
                        if !mapped {
                            return fail(Status::Fault);
                        }
                        let Some(mut sh) = c.shadow_for(n, offset, self.cfg.max_shadow_bytes)
                        else {
                            return fail(Status::TooMany);
                        };
                        sh.used = len;
                        (sh.ptr, Some(sh))
                    }
                };
                // SAFETY: `ptr..ptr + len` is the client's memory, valid as the placement
                // promised (above), or a shadow the region slot owns until deregistered.
                let region = unsafe { self.ep.register(ptr, len, remote_write) };
                // `live < limit` was checked above, so the insert succeeds.
                let Some(h) = c.regions.insert(RegionSlot { id: region, shadow }) else {
                    self.ep.deregister(now, region);
                    return fail(Status::TooMany);
                };
                let mut cqe = Cqe::new(user, CqeKind::Registered, Status::Ok);
                cqe.region = h;
                cqe.len = len;
                cqe.tag = u64::from(self.ep.rkey(region));
                Some(cqe)
            }
            Op::Deregister { region } => {
                let Some(slot) = c.regions.remove(region) else {
                    return fail(Status::UnknownRegion);
                };
                self.ep.deregister(now, slot.id);
                // Requests on it complete (failed) now, while its shadow still exists.
                self.route_events(now);
                if let (Some(sh), Some(c)) = (slot.shadow, self.clients[ci as usize].as_mut()) {
                    c.keep_spare(sh);
                }
                Some(Cqe::new(user, CqeKind::Done, Status::Ok))
            }
            Op::Send { .. } | Op::Recv { .. } | Op::Write { .. } => {
                let Some((conn, mut wr)) = sqe.op.request() else {
                    return fail(Status::BadDescriptor);
                };
                let handle = match &mut wr {
                    WorkRequest::Send { region, .. }
                    | WorkRequest::Recv { region, .. }
                    | WorkRequest::Write { region, .. } => region,
                };
                let client_handle = handle.0;
                let (Some(slot), Some(rs)) = (c.conns.get(conn), c.regions.get_mut(handle.0))
                else {
                    return fail(Self::which_unknown(c, conn));
                };
                *handle = rs.id;
                let id = slot.id;
                let mut copy_out = None;
                if let Some(sh) = rs.shadow.as_mut() {
                    match wr {
                        WorkRequest::Recv { offset, len, .. } => {
                            if sh.range(offset, len).is_none() {
                                return fail(Status::OutOfBounds);
                            }
                            copy_out = Some((client_handle, offset));
                        }
                        WorkRequest::Send { offset, len, .. }
                        | WorkRequest::Write { offset, len, .. } => {
                            let addr = sh.addr.wrapping_add(offset);
                            let Some(dst) = sh.range(offset, len) else {
                                return fail(Status::OutOfBounds);
                            };
                            if !c.foreign.as_mut().is_some_and(|mem| mem.read(addr, dst)) {
                                return fail(Status::Fault);
                            }
                        }
                    }
                }
                self.post(now, ci, id, wr, user, copy_out)
            }
        }
    }

    fn which_unknown(c: &Client, conn: u32) -> Status {
        if c.conns.get(conn).is_none() {
            Status::UnknownConnection
        } else {
            Status::UnknownRegion
        }
    }

    fn post(
        &mut self,
        now: Instant,
        ci: u16,
        id: ConnId,
        wr: WorkRequest,
        user: u64,
        copy_out: Option<(u32, u64)>,
    ) -> Option<Cqe> {
        let kind = match wr {
            WorkRequest::Send { .. } => CqeKind::Send,
            WorkRequest::Recv { .. } => CqeKind::Recv,
            WorkRequest::Write { .. } => CqeKind::Write,
        };
        match self.ep.post(now, id, wr) {
            Ok(w) => {
                self.wr_owner.insert(
                    w.0,
                    Outstanding {
                        client: ci,
                        user,
                        copy_out,
                    },
                );
                None
            }
            Err(e) => Some(Cqe::new(user, kind, Status::from_post_error(e))),
        }
    }

    /// Route every pending endpoint event to its client's completion ring. The placement
    /// calls this after each datapath round (receive, timers, transmit).
    pub fn route_events(&mut self, now: Instant) {
        while let Some(ev) = self.ep.poll_event() {
            self.route(now, ev);
        }
    }

    /// Route one endpoint event (for placements that collect events themselves).
    pub fn route(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::Connected { conn } => {
                let Some(&(ci, h)) = self.conn_owner.get(&conn.0) else {
                    self.stats.orphan_events += 1;
                    return;
                };
                let Some(cookie) = self.clients[ci as usize]
                    .as_mut()
                    .and_then(|c| c.conns.get_mut(h))
                    .and_then(|s| s.connecting.take())
                else {
                    return;
                };
                let mut cqe = Cqe::new(cookie, CqeKind::Connected, Status::Ok);
                cqe.conn = h;
                self.complete(ci, cqe);
            }
            Event::Accepted {
                conn,
                peer,
                user_data,
            } => {
                let owner = self
                    .listeners
                    .range(..=user_data)
                    .next_back()
                    .filter(|(_, v)| user_data <= v.0)
                    .map(|(_, v)| v.1);
                let Some(ci) = owner else {
                    self.stats.unrouted_accepts += 1;
                    self.ep.reject(now, conn);
                    return;
                };
                let Some(c) = self.clients[ci as usize].as_mut() else {
                    self.ep.reject(now, conn);
                    return;
                };
                let Some(h) = c.conns.insert(ConnSlot {
                    id: conn,
                    connecting: None,
                }) else {
                    self.ep.reject(now, conn);
                    return;
                };
                self.conn_owner.insert(conn.0, (ci, h));
                let mut cqe = Cqe::new(0, CqeKind::Accepted, Status::Ok);
                cqe.conn = h;
                cqe.tag = user_data;
                cqe.addr = Some(peer);
                self.complete(ci, cqe);
            }
            Event::Completion(done) => {
                let owner = if matches!(done.kind, CompletionKind::WriteReceived { .. }) {
                    self.conn_owner
                        .get(&done.conn.0)
                        .map(|&(ci, _)| Outstanding {
                            client: ci,
                            user: 0,
                            copy_out: None,
                        })
                } else {
                    self.wr_owner.remove(&done.wr.0)
                };
                let Some(Outstanding {
                    client: ci,
                    user,
                    copy_out,
                }) = owner
                else {
                    self.stats.orphan_events += 1;
                    return;
                };
                let handle = self.conn_owner.get(&done.conn.0).map_or(0, |&(_, h)| h);
                let (kind, tag) = match done.kind {
                    CompletionKind::Send => (CqeKind::Send, 0),
                    CompletionKind::Recv => (CqeKind::Recv, done.tag),
                    CompletionKind::Write => (CqeKind::Write, 0),
                    CompletionKind::WriteReceived { imm } => {
                        (CqeKind::WriteReceived, u64::from(imm))
                    }
                };
                let (mut status, detail) = match done.status {
                    Ok(()) => (Status::Ok, 0),
                    Err(WrError::Truncated { message, .. }) => (Status::Truncated, message),
                    Err(WrError::RemoteAccess) => (Status::RemoteAccess, 0),
                    Err(WrError::ConnectionLost(e)) => (Status::from_conn_error(e), 0),
                    Err(WrError::Closed) => (Status::Closed, 0),
                };
                if let Some((region, offset)) = copy_out
                    && status == Status::Ok
                {
                    status = self.copy_out(ci, region, offset, done.len);
                }
                let mut cqe = Cqe::new(user, kind, status);
                cqe.conn = handle;
                cqe.len = done.len;
                cqe.tag = tag;
                cqe.detail = detail;
                self.complete(ci, cqe);
            }
            Event::ConnectionLost { conn, peer, reason } => {
                let Some(&(ci, h)) = self.conn_owner.get(&conn.0) else {
                    self.stats.orphan_events += 1;
                    return;
                };
                let cookie = self.clients[ci as usize]
                    .as_mut()
                    .and_then(|c| c.conns.get_mut(h))
                    .and_then(|s| s.connecting.take());
                // A connect that never completed ends with its own completion, failed.
                let (user, kind) = match cookie {
                    Some(u) => (u, CqeKind::Connected),
                    None => (0, CqeKind::ConnectionLost),
                };
                let mut cqe = Cqe::new(user, kind, Status::from_conn_error(reason));
                cqe.conn = h;
                cqe.addr = Some(peer);
                self.complete(ci, cqe);
            }
            Event::Closed { conn } => {
                let Some(&(ci, h)) = self.conn_owner.get(&conn.0) else {
                    // The client closed it itself (its close completed already).
                    return;
                };
                let mut cqe = Cqe::new(0, CqeKind::Closed, Status::PeerClosed);
                cqe.conn = h;
                self.complete(ci, cqe);
            }
        }
    }

    /// Copy `len` received bytes at `offset` of a foreign region's shadow out to the client.
    fn copy_out(&mut self, ci: u16, region: u32, offset: u64, len: u64) -> Status {
        let Some(c) = self.clients.get_mut(ci as usize).and_then(Option::as_mut) else {
            return Status::LocalAccess;
        };
        let (Some(rs), Some(mem)) = (c.regions.get_mut(region), c.foreign.as_mut()) else {
            return Status::LocalAccess;
        };
        let Some(sh) = rs.shadow.as_mut() else {
            return Status::LocalAccess;
        };
        let addr = sh.addr.wrapping_add(offset);
        match sh.range(offset, len) {
            Some(src) if mem.write(addr, src) => Status::Ok,
            Some(_) => Status::Fault,
            None => Status::LocalAccess,
        }
    }

    /// Queue `cqe` for client `ci`: into its ring, or its backlog while the ring is full.
    fn complete(&mut self, ci: u16, cqe: Cqe) {
        let max = self.cfg.max_backlog;
        let Some(c) = self.clients.get_mut(ci as usize).and_then(Option::as_mut) else {
            return;
        };
        if c.broken.is_some() {
            return;
        }
        if c.backlog.is_empty() {
            match c.cq.push(&cqe.encode()) {
                Ok(true) => {
                    self.stats.completions += 1;
                    c.pushed = true;
                    return;
                }
                Ok(false) => {}
                Err(e) => {
                    self.mark_broken(ci as usize, Broken::Ring(e));
                    return;
                }
            }
        }
        if c.backlog.len() >= max {
            self.mark_broken(ci as usize, Broken::CompletionOverflow);
            return;
        }
        self.stats.backlogged += 1;
        c.backlog.push_back(cqe);
    }

    /// Move backlogged completions into rings with room, and append to `wake` the clients
    /// whose completion ring needs a doorbell (their consumer sleeps). The placement keeps
    /// `wake` from round to round, so a loop round allocates nothing.
    pub fn flush(&mut self, wake: &mut Vec<ClientId>) {
        for i in 0..self.clients.len() {
            let mut broke = None;
            if let Some(c) = self.clients[i].as_mut() {
                while let Some(cqe) = c.backlog.front() {
                    match c.cq.push(&cqe.encode()) {
                        Ok(true) => {
                            c.backlog.pop_front();
                            self.stats.completions += 1;
                            c.pushed = true;
                        }
                        Ok(false) => break,
                        Err(e) => {
                            broke = Some(Broken::Ring(e));
                            break;
                        }
                    }
                }
                // One doorbell check (a fence and a load) per client and round, after its
                // last completion of the round, not one per completion.
                if core::mem::take(&mut c.pushed) && c.cq.needs_doorbell() {
                    wake.push(ClientId(i as u16));
                }
            }
            if let Some(b) = broke {
                self.mark_broken(i, b);
            }
        }
    }

    /// Before the engine sleeps: announce it on every submission ring, then look once more.
    /// False: a submission (or backlog room) arrived meanwhile; do not sleep.
    pub fn prepare_sleep(&mut self) -> bool {
        let mut ok = true;
        for i in 0..self.clients.len() {
            let Some(c) = self.clients[i].as_mut() else {
                continue;
            };
            if c.broken.is_some() {
                continue;
            }
            if !c.backlog.is_empty() {
                // Waiting for the client to read completions: poll, do not sleep long.
                ok = false;
                continue;
            }
            match c.sq.prepare_sleep() {
                Ok(true) => {}
                Ok(false) => ok = false,
                Err(e) => self.mark_broken(i, Broken::Ring(e)),
            }
        }
        ok
    }

    /// After waking: clear the asleep flags.
    pub fn woke(&mut self) {
        for c in self.clients.iter().flatten() {
            c.sq.woke();
        }
    }

    fn mark_broken(&mut self, i: usize, why: Broken) {
        if let Some(c) = self.clients.get_mut(i).and_then(Option::as_mut)
            && c.broken.is_none()
        {
            c.broken = Some(why);
            c.backlog.clear();
            self.broken.push(ClientId(i as u16));
            self.stats.broken_clients += 1;
        }
    }

    /// The endpoint's id for a client's connection handle (for the placement's statistics).
    pub fn conn_id(&self, client: ClientId, handle: u32) -> Option<ConnId> {
        self.clients
            .get(client.0 as usize)?
            .as_ref()?
            .conns
            .get(handle)
            .map(|s| s.id)
    }

    /// Outstanding requests the engine tracks (all clients).
    pub fn outstanding(&self) -> usize {
        self.wr_owner.len()
    }
}
