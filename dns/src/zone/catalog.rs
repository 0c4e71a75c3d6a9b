//! The set of zones served, and how it is replaced when zone files change.
//!
//! Queries read the current [`Catalog`] through an `ArcSwap`: no lock, and a reload publishes a
//! whole new catalog at once, so no query ever sees half a zone. Reloads parse changed files off
//! to the side; a file that fails keeps its previous version serving.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

/// Zones by origin key, each with its query counters; looked up once per label of every query,
/// so with a fast hasher.
type ZoneMap = hashbrown::HashMap<Box<[u8]>, (Arc<Zone>, Arc<ZoneCounters>)>;

use arc_swap::ArcSwap;
use tracing::{debug, error, info, warn};

use foobar_state::Access;

use crate::{
    error::{AddedError, Error, ZoneError},
    metrics::{ZoneCounters, metrics},
    wire::name,
    zone::Rr,
    zone::Zone,
    zone::load::{Stamp, default_origin, load_zone, stamp},
    zone::snapshot,
};

/// Zones by origin key; immutable once published.
#[derive(Debug, Default)]
pub struct Catalog {
    zones: ZoneMap,
}

impl Catalog {
    /// A catalog of these zones. Origins must be distinct.
    pub fn new(zones: impl IntoIterator<Item = Arc<Zone>>) -> Self {
        Catalog {
            zones: zones
                .into_iter()
                .map(|zone| {
                    let counters = metrics().zone(zone.origin_key(), &zone.origin_text());
                    (zone.origin_key().into(), (zone, counters))
                })
                .collect(),
        }
    }

    /// The zone that `key` falls in: the one with the longest origin at or above it.
    pub fn find(&self, key: &[u8]) -> Option<&Zone> {
        self.find_counted(key).map(|(zone, _)| zone)
    }

    /// [`Catalog::find`], with the zone's query counters.
    pub(crate) fn find_counted(&self, key: &[u8]) -> Option<(&Zone, &ZoneCounters)> {
        self.find_within(key, key.len())
    }

    /// The zone for a DS query: DS records live on the parent side of a cut (RFC 4035 section
    /// 3.1.4.1), so a zone's own apex is looked up in the zone above it where we have that.
    pub(crate) fn find_for_ds(&self, key: &[u8]) -> Option<(&Zone, &ZoneCounters)> {
        match self.find_counted(key) {
            Some((zone, counters)) if zone.origin_key() == key && !key.is_empty() => self
                .find_within(key, key.len() - 1)
                .or(Some((zone, counters))),
            found => found,
        }
    }

    /// The zone with the longest origin at or above `key` whose key is at most `max_len` long.
    fn find_within(&self, key: &[u8], max_len: usize) -> Option<(&Zone, &ZoneCounters)> {
        let mut found = self.zones.get(&key[..0]);
        for len in name::key_prefixes(key).take_while(|&len| len <= max_len) {
            if let Some(entry) = self.zones.get(&key[..len]) {
                found = Some(entry);
            }
        }
        found.map(|(zone, counters)| (&**zone, &**counters))
    }

    /// The zone whose origin has this key.
    pub fn get(&self, origin_key: &[u8]) -> Option<&Arc<Zone>> {
        self.zones.get(origin_key).map(|(zone, _)| zone)
    }

    /// Every zone.
    pub fn zones(&self) -> impl Iterator<Item = &Arc<Zone>> {
        self.zones.values().map(|(zone, _)| zone)
    }

    /// How many zones.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }
}

#[derive(Debug)]
struct Served {
    zone: Arc<Zone>,
    /// The file's own version, when what is served differs from it: records added at run time
    /// (`Zones::set_added`), or its serial moved past one served before.
    file: Option<Arc<Zone>>,
    /// The zone file and every file it includes, as they were when loaded.
    sources: Vec<(PathBuf, Stamp)>,
    /// The file failed to load: what is served is its last good copy or nothing (SERVFAIL),
    /// and every reload tries the file again.
    failed: bool,
    /// For a zone signed here: when its first signature expires (seconds since the epoch).
    expires: Option<u64>,
    /// The load error last logged for the file, and the file's stamp then: the same error from
    /// the same file is not logged again when another change in the folder reloads it.
    reported: Option<(String, Stamp)>,
}

impl Served {
    fn unchanged(&self) -> bool {
        !self.failed && self.sources.iter().all(|(path, was)| stamp(path) == *was)
    }
}

/// A zone whose served version changed (journal, NOTIFY).
#[derive(Debug, Clone)]
pub struct Change {
    /// What was served before, if anything was (since this process started).
    pub old: Option<Arc<Zone>>,
    pub new: Arc<Zone>,
    /// For a zone file at its first load: its last good copy, the version served before a
    /// restart, which the journal may need to catch up from.
    pub last_good: Option<PathBuf>,
}

/// How the zones signed here are signed: the `dnssec` layer, above this one, implements it.
pub trait Signer: std::fmt::Debug + Send + Sync {
    /// Whether the zone `origin_key` is signed here.
    fn signs(&self, origin_key: &[u8]) -> bool;
    /// `zone` signed, if it is signed here (`None` if not), keeping the signatures of
    /// `previous` (a version served before) over what did not change.
    fn sign(&self, zone: &Zone, previous: Option<&Zone>) -> Option<Result<Signed, SignFailed>>;
    /// For a zone signed here whose first signature expires at `expires`: when it is due to
    /// be signed again (its signatures' refresh, or the next event of its keys' timelines).
    fn due(&self, origin_key: &[u8], expires: u64) -> Option<u64>;
    /// The serial of a version signed again at `now`, after `serial`.
    fn next_serial(&self, origin_key: &[u8], serial: u32, now: u64) -> u32;
    /// When the first signature of `zone` (a signed copy) expires, if it is signed here.
    fn expires(&self, zone: &Zone, now: u64) -> Option<u64>;
    /// The keys and schedule of the zone `origin` (wire form), signed here, whose first
    /// signature expires at `expires`.
    fn status(&self, origin: &[u8], expires: u64) -> Option<DnssecStatus>;
}

/// Why a zone could not be signed, as the signer says it.
pub type SignFailed = Box<dyn std::error::Error + Send + Sync>;

/// A zone signed.
#[derive(Debug)]
pub struct Signed {
    /// The zone with its DNSSEC records.
    pub zone: Zone,
    /// How many signatures were made (the others were kept).
    pub signatures: usize,
    /// When its first signature expires, in seconds since the epoch.
    pub expires: u64,
}

/// Signs nothing.
impl Signer for () {
    fn signs(&self, _: &[u8]) -> bool {
        false
    }

    fn sign(&self, _: &Zone, _: Option<&Zone>) -> Option<Result<Signed, SignFailed>> {
        None
    }

    fn due(&self, _: &[u8], _: u64) -> Option<u64> {
        None
    }

    fn next_serial(&self, _: &[u8], serial: u32, _: u64) -> u32 {
        serial.wrapping_add(1)
    }

    fn expires(&self, _: &Zone, _: u64) -> Option<u64> {
        None
    }

    fn status(&self, _: &[u8], _: u64) -> Option<DnssecStatus> {
        None
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The zones folder and what is served from it, with the secondary zones beside it.
#[derive(Debug)]
pub struct Zones {
    folder: PathBuf,
    live: Arc<ArcSwap<Catalog>>,
    /// Secondary zones by origin key, as their transfers last brought them.
    secondaries: Mutex<HashMap<Vec<u8>, Arc<Zone>>>,
    /// Where changes of served versions go.
    changes: Option<tokio::sync::mpsc::UnboundedSender<Change>>,
    /// What each zone file currently serves; the lock only orders reloads, queries never take it.
    served: Mutex<HashMap<PathBuf, Served>>,
    /// The last load of each zone (file or transfer), by origin key: for status and metrics.
    loads: Mutex<HashMap<Vec<u8>, Load>>,
    /// Where the last good version of each zone is kept, by file name.
    last_good: PathBuf,
    /// Orders the writes of last good copies.
    saving: Arc<Mutex<()>>,
    /// Records added at run time to zones of files, by origin key (`set_added`).
    added: Mutex<HashMap<Vec<u8>, Vec<Rr>>>,
    /// The zones signed here, and their keys.
    signing: Arc<dyn Signer>,
}

/// What a reload changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Zones loaded anew.
    pub loaded: usize,
    /// Zones whose file is gone.
    pub removed: usize,
    /// Zones whose file failed: their previous version serves.
    pub failed: usize,
}

impl Zones {
    /// Checks every `*.zone` file in `folder` as `serve --check` does: the first error is
    /// returned, and nothing is written.
    pub fn check(folder: &Path) -> Result<Vec<Zone>, Error> {
        let mut zones: Vec<Zone> = Vec::new();
        let mut by_origin: HashMap<Vec<u8>, PathBuf> = HashMap::new();
        for path in zone_files(folder)? {
            let loaded = load_zone(&path, None)?;
            let origin = loaded.zone.origin_key().to_vec();
            if let Some(first) = by_origin.insert(origin, path.clone()) {
                return Err(Error::DuplicateZone {
                    origin: loaded.zone.origin_text(),
                    first,
                    second: path,
                });
            }
            log_loaded(&path, &loaded.zone, &loaded.warnings);
            zones.push(loaded.zone);
        }
        Ok(zones)
    }

    /// Loads every `*.zone` file in `folder` to serve it. A file that fails is logged with
    /// file, line and reason and served from its last good copy in `last_good` (kept there at
    /// every successful load), or answered SERVFAIL: one broken zone never stops the others,
    /// nor the rest of the server. Only an unreadable folder is an error.
    pub fn load(
        folder: &Path,
        last_good: &Path,
        secondaries: Vec<Arc<Zone>>,
        changes: Option<tokio::sync::mpsc::UnboundedSender<Change>>,
        signing: Arc<dyn Signer>,
    ) -> Result<Zones, Error> {
        zone_files(folder)?;
        let zones = Zones {
            folder: folder.to_path_buf(),
            live: Arc::new(ArcSwap::from_pointee(Catalog::default())),
            secondaries: Mutex::new(
                secondaries
                    .into_iter()
                    .map(|zone| (zone.origin_key().to_vec(), zone))
                    .collect(),
            ),
            changes,
            served: Mutex::new(HashMap::new()),
            loads: Mutex::default(),
            last_good: last_good.to_path_buf(),
            saving: Arc::new(Mutex::new(())),
            added: Mutex::default(),
            signing,
        };
        zones.reload(true);
        Ok(zones)
    }

    /// The live catalog, for the listeners.
    pub fn catalog(&self) -> Arc<ArcSwap<Catalog>> {
        self.live.clone()
    }

    /// Every zone served, with its last load.
    pub fn status(&self) -> Vec<ZoneStatus> {
        let loads = self.loads.lock().unwrap_or_else(PoisonError::into_inner);
        let mut status = zone_status(&self.live, &loads);
        drop(loads);
        let served = self.served.lock().unwrap_or_else(PoisonError::into_inner);
        for entry in served.values() {
            let Some(expires) = entry.expires else {
                continue;
            };
            let origin = entry.zone.origin_text();
            if let Some(zone) = status.iter_mut().find(|zone| zone.zone == origin) {
                zone.dnssec = self.signing.status(entry.zone.origin(), expires);
            }
        }
        status
    }

    fn record_load(&self, origin_key: &[u8], ok: bool, secondary: bool) {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let mut loads = self.loads.lock().unwrap_or_else(PoisonError::into_inner);
        loads.insert(origin_key.to_vec(), Load { ok, secondary, at });
    }

    /// The zones folder.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// The version of the secondary zone `origin` (wire form) served now.
    pub fn secondary(&self, origin: &[u8]) -> Option<Arc<Zone>> {
        let key = crate::wire::name::key_of(origin);
        self.secondaries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .cloned()
    }

    /// Serves `zone` as the new version of a secondary zone.
    pub fn publish_secondary(&self, zone: Arc<Zone>) {
        self.record_load(zone.origin_key(), zone.is_available(), true);
        let served = self
            .served
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = self
            .secondaries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(zone.origin_key().to_vec(), zone.clone());
        self.publish(&served);
        self.announce(Change {
            old,
            new: zone,
            last_good: None,
        });
    }

    /// Serves the zone of a file, `origin_key`, with `records` added (none: as its file has it),
    /// in a new version with the next serial, which its secondaries transfer (IXFR) like any
    /// edit: how an ACME DNS-01 record reaches Knot or NSD secondaries. The additions stay
    /// through reloads of the file; the served serial never goes back, even across a restart.
    /// The new serial.
    pub fn set_added(&self, origin_key: &[u8], records: Vec<Rr>) -> Result<u32, AddedError> {
        let mut served = self
            .served
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        {
            let mut added = self.added.lock().unwrap_or_else(PoisonError::into_inner);
            if records.is_empty() {
                added.remove(origin_key);
            } else {
                added.insert(origin_key.to_vec(), records.clone());
            }
        }
        let Some((path, entry)) = served
            .iter_mut()
            .find(|(_, entry)| entry.zone.origin_key() == origin_key && !entry.failed)
        else {
            return Err(AddedError::NotAFile);
        };
        let file = entry.file.clone().unwrap_or_else(|| entry.zone.clone());
        let serial = entry.zone.serial().wrapping_add(1);
        let zone = Arc::new(
            snapshot::with_added(&file, &records, serial)
                .map_err(|e| AddedError::Zone(e.to_string()))?,
        );
        let (zone, expires) = self
            .signed(zone, Some(&entry.zone))
            .map_err(|e| AddedError::Zone(format!("the zone cannot be signed: {e}")))?;
        entry.expires = expires;
        let old = std::mem::replace(&mut entry.zone, zone.clone());
        entry.file = Some(file);
        let path = path.clone();
        self.publish(&served);
        drop(served);
        self.keep_serial(&path, serial);
        self.save(vec![(path, zone.clone())]);
        self.announce(Change {
            old: Some(old),
            new: zone,
            last_good: None,
        });
        Ok(serial)
    }

    /// `zone` as it is served: signed, where it is a zone signed here, keeping the signatures of
    /// `previous` over what did not change; with it, when its first signature expires.
    fn signed(
        &self,
        zone: Arc<Zone>,
        previous: Option<&Zone>,
    ) -> Result<(Arc<Zone>, Option<u64>), SignFailed> {
        match self.signing.sign(&zone, previous) {
            None => Ok((zone, None)),
            Some(Ok(signed)) => {
                info!(zone = %zone.origin_text(), serial = zone.serial(), signatures_made = signed.signatures, "zone signed");
                Ok((Arc::new(signed.zone), Some(signed.expires)))
            }
            Some(Err(e)) => Err(e),
        }
    }

    /// What a file that just loaded is served as (the zone, the file's own version where that
    /// differs, when its signatures expire): with the records added at run time, the serial
    /// moved past the last one served where needed, and signed where it is signed here. A zone
    /// that cannot be signed (its keys unreadable) is an error like a broken file: what served
    /// before, or its last good copy, keeps serving rather than the zone unsigned.
    #[allow(clippy::type_complexity)]
    fn as_served(
        &self,
        path: &Path,
        loaded: Arc<Zone>,
        previous: Option<&Served>,
    ) -> Result<(Arc<Zone>, Option<Arc<Zone>>, Option<u64>), ZoneError> {
        // The last serial served, where it may be past the file's: a version with additions
        // before; at the first load, what an earlier process kept (one file read, only then).
        let last = match previous {
            None => self.kept_serial(path),
            Some(p) if p.file.is_some() && !p.failed => Some(p.zone.serial()),
            Some(_) => None,
        };
        let (zone, file) = self.served_as(path, loaded, last);
        // The version served before, else (at start) the last good copy: its signatures over
        // what did not change are kept.
        let kept = match previous {
            None if self.signing.signs(zone.origin_key()) => {
                self.last_good_copy(path).map(Arc::new)
            }
            _ => previous.map(|p| p.zone.clone()),
        };
        let (signed, expires) =
            self.signed(zone.clone(), kept.as_deref())
                .map_err(|e| ZoneError::Zone {
                    file: path.to_path_buf(),
                    reason: format!("the zone cannot be signed: {e}"),
                })?;
        let file = if expires.is_some() {
            file.or(Some(zone))
        } else {
            file
        };
        Ok((signed, file, expires))
    }

    /// Signs again, with the next serial, every zone signed here whose signatures are due for
    /// refresh, or whose keys change, at `now` (seconds since the epoch); the new versions go out as edits do
    /// (journal, NOTIFY). Returns when the next signatures are due, if any zone is signed.
    pub fn refresh_signatures(&self, now: u64) -> Option<u64> {
        let mut served = self.served.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next_due: Option<u64> = None;
        let mut refreshed = Vec::new();
        for (path, entry) in served.iter_mut() {
            let Some(due) = entry
                .expires
                .and_then(|expires| self.signing.due(entry.zone.origin_key(), expires))
            else {
                continue;
            };
            if due > now {
                next_due = Some(next_due.map_or(due, |next| next.min(due)));
                continue;
            }
            let file = entry.file.clone().unwrap_or_else(|| entry.zone.clone());
            let added = self
                .added
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(file.origin_key())
                .cloned()
                .unwrap_or_default();
            let serial =
                self.signing
                    .next_serial(entry.zone.origin_key(), entry.zone.serial(), now);
            let zone = match snapshot::with_added(&file, &added, serial) {
                Ok(zone) => Arc::new(zone),
                Err(e) => {
                    error!(zone = %file.origin_text(), error = %e, "signatures not refreshed");
                    continue;
                }
            };
            let (zone, expires) = match self.signed(zone, Some(&entry.zone)) {
                Ok(signed) => signed,
                Err(e) => {
                    error!(zone = %file.origin_text(), error = %e, "signatures not refreshed; the zone cannot be signed");
                    continue;
                }
            };
            let Some(expires) = expires else { continue };
            info!(zone = %zone.origin_text(), serial, "signatures refreshed");
            if let Some(due) = self.signing.due(zone.origin_key(), expires) {
                next_due = Some(next_due.map_or(due, |next| next.min(due)));
            }
            let old = std::mem::replace(&mut entry.zone, zone.clone());
            entry.file = Some(file);
            entry.expires = Some(expires);
            refreshed.push((path.clone(), old, zone));
        }
        if refreshed.is_empty() {
            return next_due;
        }
        self.publish(&served);
        drop(served);
        for (path, _, zone) in &refreshed {
            self.keep_serial(path, zone.serial());
        }
        self.save(
            refreshed
                .iter()
                .map(|(path, _, zone)| (path.clone(), zone.clone()))
                .collect(),
        );
        for (_, old, new) in refreshed {
            self.announce(Change {
                old: Some(old),
                new,
                last_good: None,
            });
        }
        next_due
    }

    /// Where the last serial served for a file is kept once it moved past the file's own.
    fn serial_path(&self, path: &Path) -> PathBuf {
        let file = path.file_name().unwrap_or(path.as_os_str());
        let mut name = file.to_os_string();
        name.push(".serial");
        self.last_good.with_file_name("served-serial").join(name)
    }

    fn keep_serial(&self, path: &Path, serial: u32) {
        let at = self.serial_path(path);
        if let Err(e) = foobar_state::write(&at, serial.to_string().as_bytes(), Access::Public) {
            warn!(file = %at.display(), error = %e, "the served serial is not kept");
        }
    }

    /// The serial kept for `path` by an earlier process, if one moved past its file's.
    fn kept_serial(&self, path: &Path) -> Option<u32> {
        std::fs::read_to_string(self.serial_path(path))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
    }

    /// What a file that just loaded is served as: with the records added at run time, and
    /// with a serial past `last` (the last one served, when it moved past its file's) when the
    /// file's is not: secondaries that have that one would otherwise never take it.
    fn served_as(
        &self,
        path: &Path,
        loaded: Arc<Zone>,
        last: Option<u32>,
    ) -> (Arc<Zone>, Option<Arc<Zone>>) {
        let added = self
            .added
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(loaded.origin_key())
            .cloned()
            .unwrap_or_default();
        let behind = last.is_some_and(|last| !crate::zone::serial_newer(loaded.serial(), last));
        if added.is_empty() && !behind {
            return (loaded, None);
        }
        let serial = match last {
            Some(last) if behind => last.wrapping_add(1),
            _ => loaded.serial(),
        };
        match snapshot::with_added(&loaded, &added, serial) {
            Ok(zone) => {
                if behind {
                    info!(zone = %loaded.origin_text(), file = %path.display(), file_serial = loaded.serial(), serial,
                        "the file's serial is not past the last one served: served with the next one");
                    self.keep_serial(path, serial);
                }
                (Arc::new(zone), Some(loaded))
            }
            Err(e) => {
                warn!(zone = %loaded.origin_text(), error = %e, "records added at run time left out");
                (loaded, None)
            }
        }
    }

    /// Builds the catalog from the zone files served and the secondary zones; a secondary
    /// zone whose origin a file also has is left out (the file wins).
    fn publish(&self, served: &HashMap<PathBuf, Served>) {
        let secondaries = self
            .secondaries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let files: std::collections::HashSet<&[u8]> =
            served.values().map(|s| s.zone.origin_key()).collect();
        let mut zones: Vec<Arc<Zone>> = served.values().map(|s| s.zone.clone()).collect();
        for (key, zone) in secondaries.iter() {
            if files.contains(key.as_slice()) {
                error!(zone = %zone.origin_text(), "a zone file and a secondary zone have the same origin; the file is served");
            } else {
                zones.push(zone.clone());
            }
        }
        self.live.store(Arc::new(Catalog::new(zones)));
    }

    fn announce(&self, change: Change) {
        if let Some(changes) = &self.changes {
            let _ = changes.send(change);
        }
    }

    /// Re-reads the zones folder: new files add zones, deleted files remove them, changed files
    /// (or all, with `force`) are parsed again. A file that fails to load keeps its previous
    /// version serving, else its last good copy, else SERVFAIL; the error is logged with file,
    /// line and reason.
    pub fn reload(&self, force: bool) -> Reloaded {
        self.reload_forcing(|_| force)
    }

    /// The file of the zone `origin_key`, if a file serves it.
    pub fn file_of(&self, origin_key: &[u8]) -> Option<PathBuf> {
        let served = self.served.lock().unwrap_or_else(PoisonError::into_inner);
        served
            .iter()
            .find(|(_, entry)| entry.zone.origin_key() == origin_key)
            .map(|(path, _)| path.clone())
    }

    /// [`Zones::reload`], parsing again the files `force` picks even if unchanged.
    pub fn reload_forcing(&self, force: impl Fn(&Path) -> bool) -> Reloaded {
        let mut served = match self.served.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut report = Reloaded::default();
        let files = match zone_files(&self.folder) {
            Ok(files) => files,
            Err(e) => {
                error!(error = %e, "zone reload failed; serving the previous zones");
                report.failed += 1;
                return report;
            }
        };
        let mut next: HashMap<PathBuf, Served> = HashMap::new();
        let mut origins: HashMap<Vec<u8>, PathBuf> = HashMap::new();
        let mut to_save: Vec<(PathBuf, Arc<Zone>)> = Vec::new();
        let mut changes: Vec<Change> = Vec::new();
        for path in files {
            let previous = served.remove(&path);
            let keep = previous
                .as_ref()
                .is_some_and(|p| !force(&path) && p.unchanged());
            let entry = if keep {
                previous
            } else {
                let prepared = load_zone(&path, None).and_then(|loaded| {
                    let zone = Arc::new(loaded.zone);
                    let served = self.as_served(&path, zone.clone(), previous.as_ref())?;
                    Ok((zone, loaded.files, loaded.warnings, served))
                });
                match prepared {
                    Ok((loaded, files, warnings, (zone, file, expires))) => {
                        let before = previous.as_ref().filter(|p| !p.failed);
                        if let Some(old) = before.filter(|p| p.file.is_none()) {
                            warn_serial(&path, &old.zone, &loaded);
                        }
                        log_loaded(&path, &loaded, &warnings);
                        self.record_load(loaded.origin_key(), true, false);
                        report.loaded += 1;
                        let entry = Served {
                            zone,
                            file,
                            sources: files,
                            failed: false,
                            expires,
                            reported: None,
                        };
                        to_save.push((path.clone(), entry.zone.clone()));
                        changes.push(Change {
                            old: previous.as_ref().map(|p| p.zone.clone()),
                            new: entry.zone.clone(),
                            last_good: previous.is_none().then(|| self.last_good_path(&path)),
                        });
                        Some(entry)
                    }
                    Err(e) => {
                        report.failed += 1;
                        let failure = (e.to_string(), stamp(&path));
                        let repeated = !force(&path)
                            && previous
                                .as_ref()
                                .is_some_and(|p| p.reported.as_ref() == Some(&failure));
                        let mut kept = match previous {
                            Some(previous) if repeated => {
                                debug!("{e}; unchanged since it was logged");
                                Some(previous)
                            }
                            Some(previous) if !previous.failed => {
                                error!("{e}; the previous version keeps serving");
                                Some(previous)
                            }
                            _ => self.fallback(&path, &e),
                        };
                        if let Some(kept) = &mut kept {
                            kept.reported = Some(failure);
                            self.record_load(kept.zone.origin_key(), false, false);
                        }
                        kept
                    }
                }
            };
            let Some(entry) = entry else { continue };
            let origin = entry.zone.origin_key().to_vec();
            if let Some(first) = origins.get(&origin) {
                report.failed += 1;
                error!(
                    zone = %entry.zone.origin_text(),
                    file = %path.display(),
                    first = %first.display(),
                    "zone defined twice; the second file is not served"
                );
                continue;
            }
            origins.insert(origin, path.clone());
            next.insert(path, entry);
        }
        for (path, gone) in served.drain() {
            report.removed += 1;
            info!(zone = %gone.zone.origin_text(), file = %path.display(), "zone removed");
        }
        self.publish(&next);
        *served = next;
        metrics().reloaded(report.failed > 0);
        // The last good copies are written before the changes go out, so that a journal that
        // catches up from one reads the version it replaced.
        self.save(to_save);
        for change in changes {
            self.announce(change);
        }
        report
    }

    /// What a file that cannot be loaded serves: its last good copy, else SERVFAIL for the
    /// origin its name gives, else nothing.
    fn fallback(&self, path: &Path, error: &ZoneError) -> Option<Served> {
        let copy = self.last_good_path(path);
        let sources = vec![(path.to_path_buf(), stamp(path))];
        match std::fs::read(&copy).map(|bytes| snapshot::decode(&bytes)) {
            Ok(Ok(zone)) => {
                error!(
                    "{error}; serving the last good copy (serial {}) from {}",
                    zone.serial(),
                    copy.display()
                );
                // A signed copy is kept signed while the file stays broken.
                let expires = self.signing.expires(&zone, unix_now());
                return Some(Served {
                    zone: Arc::new(zone),
                    file: None,
                    sources,
                    failed: true,
                    expires,
                    reported: None,
                });
            }
            Ok(Err(reason)) => warn!(file = %copy.display(), %reason, "last good copy refused"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(file = %copy.display(), error = %e, "last good copy unreadable"),
        }
        let Some(origin) = default_origin(path) else {
            error!("{error}; the zone is not served");
            return None;
        };
        let zone = Zone::unavailable(&origin);
        error!(
            "{error}; no good copy: {} is answered SERVFAIL until the file is fixed",
            zone.origin_text()
        );
        Some(Served {
            file: None,
            zone: Arc::new(zone),
            sources,
            failed: true,
            expires: None,
            reported: None,
        })
    }

    /// The last good copy of the zone of `path`, if one is kept and reads.
    fn last_good_copy(&self, path: &Path) -> Option<Zone> {
        let bytes = std::fs::read(self.last_good_path(path)).ok()?;
        snapshot::decode(&bytes).ok()
    }

    fn last_good_path(&self, path: &Path) -> PathBuf {
        self.last_good
            .join(path.file_name().unwrap_or(path.as_os_str()))
    }

    /// Keeps these zones as their files' last good copies, off the caller's thread.
    fn save(&self, zones: Vec<(PathBuf, Arc<Zone>)>) {
        if zones.is_empty() {
            return;
        }
        let saving = self.saving.clone();
        let jobs: Vec<(PathBuf, Arc<Zone>)> = zones
            .into_iter()
            .map(|(path, zone)| (self.last_good_path(&path), zone))
            .collect();
        std::thread::spawn(move || {
            let _order = saving.lock();
            for (copy, zone) in jobs {
                let written = foobar_state::write_with(&copy, Access::Public, |file| {
                    snapshot::write(&zone, file)
                });
                if let Err(e) = written {
                    warn!(file = %copy.display(), error = %e, "cannot keep the last good copy");
                }
            }
        });
    }
}

fn log_loaded(path: &Path, zone: &Zone, warnings: &[crate::zone::load::Warning]) {
    for warning in warnings {
        warn!("{warning}");
    }
    info!(
        zone = %zone.origin_text(),
        serial = zone.serial(),
        records = zone.record_count(),
        bytes = zone.heap_size(),
        file = %path.display(),
        "zone loaded"
    );
}

fn warn_serial(path: &Path, old: &Zone, new: &Zone) {
    // RFC 1982 serial arithmetic: new must be "greater" than old.
    let increased =
        new.serial() != old.serial() && new.serial().wrapping_sub(old.serial()) < 1 << 31;
    if !increased {
        warn!(
            zone = %new.origin_text(),
            file = %path.display(),
            old = old.serial(),
            new = new.serial(),
            "zone changed but its serial did not increase; secondaries will not notice"
        );
    }
}

/// The `*.zone` files directly in `folder`, sorted.
pub fn zone_files(folder: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = std::fs::read_dir(folder).map_err(|source| Error::ZonesFolder {
        path: folder.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "zone") && path.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Where a zone stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ZoneState {
    /// Served from its file as it is now.
    Loaded,
    /// The file is broken: its last good copy, or SERVFAIL, is served.
    Failed,
    /// Followed from primaries, and current.
    Secondary,
    /// A secondary zone with no copy yet, or expired: SERVFAIL.
    Unavailable,
}

impl ZoneState {
    /// Whether what is served is the zone's latest version.
    pub fn is_current(self) -> bool {
        matches!(self, ZoneState::Loaded | ZoneState::Secondary)
    }
}

/// A zone as `/metrics` and `foobar ctl` show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ZoneStatus {
    /// The origin, with the final dot.
    pub zone: String,
    /// The serial served.
    pub serial: u32,
    /// Records served.
    pub records: usize,
    /// Where it stands.
    pub state: ZoneState,
    /// Unix seconds of the last load of its file or transfer, when known.
    pub loaded_at: Option<u64>,
    /// For a zone signed here: its keys and when it is signed next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dnssec: Option<DnssecStatus>,
}

/// A signed zone's keys and signatures, as `foobar ctl` and `/metrics` show them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DnssecStatus {
    /// Its keys, oldest first.
    pub keys: Vec<KeyStatus>,
    /// Unix seconds when its first signature expires.
    pub signatures_expire: u64,
    /// Unix seconds when it is signed again (the signatures' refresh).
    pub next_signing: u64,
}

/// One key of a signed zone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyStatus {
    /// Its key tag.
    pub tag: u16,
    /// Its algorithm number (13: ECDSA P-256, 15: Ed25519).
    pub algorithm: u8,
    /// `csk`: it signs everything.
    pub role: &'static str,
    /// `published` (not signing yet), `active`, `submitted` (its DS awaited at the parent),
    /// `retired` (published, no longer signing the zone's data).
    pub state: &'static str,
    /// Unix seconds when it was made.
    pub created: u64,
    /// Its next event: `active`, `retire` or `remove`.
    pub next_event: Option<&'static str>,
    /// Unix seconds when that is.
    pub next_event_at: Option<u64>,
}

/// The last load of a zone's file, or transfer of a secondary zone.
#[derive(Debug, Clone, Copy)]
struct Load {
    pub ok: bool,
    pub secondary: bool,
    /// Unix seconds.
    pub at: u64,
}

/// The catalog's zones as a status list, with what `Zones` knows of their loads.
fn zone_status(catalog: &ArcSwap<Catalog>, loads: &HashMap<Vec<u8>, Load>) -> Vec<ZoneStatus> {
    let catalog = catalog.load();
    let mut status: Vec<ZoneStatus> = catalog
        .zones()
        .map(|zone| {
            let load = loads.get(zone.origin_key());
            let state = match (zone.is_available(), load) {
                (false, _) => ZoneState::Unavailable,
                (true, Some(load)) if !load.ok => ZoneState::Failed,
                (true, Some(load)) if load.secondary => ZoneState::Secondary,
                (true, _) => ZoneState::Loaded,
            };
            ZoneStatus {
                zone: zone.origin_text(),
                serial: zone.serial(),
                records: zone.record_count(),
                state,
                loaded_at: load.map(|load| load.at),
                dnssec: None,
            }
        })
        .collect();
    status.sort_by(|a, b| a.zone.cmp(&b.zone));
    status
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const ZONE: &str = "$ORIGIN example.com.\n$TTL 300\n\
        @ IN SOA ns1 hostmaster SERIAL 3600 900 1209600 300\n@ IN NS ns1\nns1 IN A 192.0.2.1\n";

    fn zone(serial: u32, extra: &str) -> String {
        ZONE.replace("SERIAL", &serial.to_string()) + extra
    }

    fn no_signing() -> Arc<dyn Signer> {
        Arc::new(())
    }

    fn challenge() -> Rr {
        Rr {
            owner: crate::wire::name::from_text("_acme-challenge.example.com").unwrap(),
            rtype: crate::wire::rtype::TXT,
            ttl: 10,
            rdata: b"\x05token".to_vec(),
        }
    }

    fn served(zones: &Zones) -> Arc<Zone> {
        let key = name::key_of(&crate::wire::name::from_text("example.com").unwrap());
        zones.catalog().load().get(&key).unwrap().clone()
    }

    fn has_challenge(zone: &Zone) -> bool {
        let key = name::key_of(&challenge().owner);
        zone.find(&key)
            .ok()
            .and_then(|node| zone.rrset(node, crate::wire::rtype::TXT))
            .is_some()
    }

    #[test]
    fn added_records_get_new_serials_that_never_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("zones");
        std::fs::create_dir(&folder).unwrap();
        let file = folder.join("example.com.zone");
        std::fs::write(&file, zone(10, "")).unwrap();
        let last_good = dir.path().join("dns/last-good");
        let zones = Zones::load(&folder, &last_good, Vec::new(), None, no_signing()).unwrap();
        let origin = served(&zones).origin_key().to_vec();
        assert_eq!(served(&zones).serial(), 10);

        assert_eq!(zones.set_added(&origin, vec![challenge()]).unwrap(), 11);
        assert!(has_challenge(&served(&zones)));
        // The file edited with a serial not past the one served: the next one, the challenge kept.
        std::fs::write(&file, zone(11, "www IN A 192.0.2.2\n")).unwrap();
        zones.reload(true);
        let now = served(&zones);
        assert_eq!(now.serial(), 12);
        assert!(has_challenge(&now));
        assert!(
            now.find(&name::key_of(
                &crate::wire::name::from_text("www.example.com").unwrap()
            ))
            .is_ok()
        );
        // Taken away: another serial, the file's records only.
        assert_eq!(zones.set_added(&origin, Vec::new()).unwrap(), 13);
        assert!(!has_challenge(&served(&zones)));
        // A restart with the file still behind: past what was served before.
        drop(zones);
        let zones = Zones::load(&folder, &last_good, Vec::new(), None, no_signing()).unwrap();
        assert_eq!(served(&zones).serial(), 14);
        // A file past it is served as it is.
        std::fs::write(&file, zone(20, "")).unwrap();
        zones.reload(true);
        assert_eq!(served(&zones).serial(), 20);
        assert!(zones.set_added(b"\x03not\x00", vec![challenge()]).is_err());
    }
}
