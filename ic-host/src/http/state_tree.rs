//! The certified state tree of the replica and the rules of `read_state`.
//!
//! The tree is built fresh for each response from a view the server provides (the one subnet,
//! and the canisters and requests named in the paths), then projected onto the requested paths
//! plus `/time`: only what was asked is in it, with no pruned nodes, so a label that is not in it
//! is provably absent (ic-certification's `lookup_path` answers `Absent`, never `Unknown`). The
//! clients accept such trees (the spec file `ic-http-interface.md` §2.3); the certificate signs
//! whatever tree it is given.
//!
//! Contents (IC interface specification, "The system state tree"):
//! - `/time`: wall-clock nanoseconds, ULEB128;
//! - `/subnet/<sid>/{public_key, type, canister_ranges, node/<nid>/public_key}`, with the flat
//!   `canister_ranges` (tagged CBOR `[[lo, hi], …]`) that every client needs without a delegation;
//! - `/canister_ranges/<sid>/<lo>`: the sharded form, one shard per range labeled by its start;
//! - `/canister/<cid>/{certified_data, controllers, metadata/<name>, module_hash}`;
//! - `/request_status/<rid>/{status, reply, reject_code, reject_message, error_code}`.
//!
//! Labels in a fork are sorted as blobs (a `BTreeMap<Vec<u8>, _>` orders them so).

use std::collections::BTreeMap;

use candid::Principal;
use ic_certification::HashTree;
use ic_certification::hash_tree::{empty, fork, label, leaf};
use serde::Serialize;

use super::keys::SubnetKeys;

/// The most paths a read_state request may name, and the most labels in one path (IC interface
/// specification, "Request: Read state"; dfinity/ic `rs/validator/src/ingress_validation.rs`).
pub const MAX_PATHS: usize = 1_000;
pub const MAX_LABELS_PER_PATH: usize = 127;

/// The one subnet, as the state tree shows it.
#[derive(Debug, Clone)]
pub struct SubnetView {
    pub subnet_id: Principal,
    /// The root key in DER (133 bytes); with no delegation it is also the subnet's key.
    pub public_key_der: Vec<u8>,
    /// `"application"`, `"system"`, `"verified_application"` or `"cloud_engine"`.
    pub subnet_type: &'static str,
    /// Node ids and their Ed25519 DER keys.
    pub nodes: Vec<(Principal, Vec<u8>)>,
    /// Inclusive ranges of the canister ids the subnet hosts.
    pub canister_ranges: Vec<(Principal, Principal)>,
}

impl SubnetView {
    /// The subnet of `keys` (its id, root key and one node) hosting `canister_ranges`.
    pub fn new(keys: &SubnetKeys, subnet_type: &'static str, canister_ranges: Vec<(Principal, Principal)>) -> SubnetView {
        SubnetView {
            subnet_id: keys.subnet_id(),
            public_key_der: keys.root_key_der(),
            subnet_type,
            nodes: vec![(keys.node_id(), keys.node_key_der())],
            canister_ranges,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// `icp:public <name>`: anyone may read it.
    Public,
    /// `icp:private <name>`: only the controllers.
    Private,
}

/// A canister, as the state tree shows it.
#[derive(Debug, Clone, Default)]
pub struct CanisterView {
    /// SHA-256 of the installed module; `None` when the canister is empty (then neither
    /// `module_hash` nor `metadata` is in the tree).
    pub module_hash: Option<[u8; 32]>,
    pub controllers: Vec<Principal>,
    /// The wasm custom sections `icp:public <name>` / `icp:private <name>`.
    pub metadata: Vec<(String, Visibility, Vec<u8>)>,
    pub certified_data: Vec<u8>,
}

/// The status of an ingress message, as `/request_status/<rid>` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestStatusView {
    Received,
    Processing,
    Replied(Vec<u8>),
    Rejected {
        code: u64,
        message: String,
        error_code: String,
    },
    /// Replied or rejected, and the response since purged.
    Done,
}

/// An ingress message the replica knows of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestView {
    /// Who signed it: only they may read its status.
    pub sender: Principal,
    /// The canister it was sent to (checked against the reader's delegation targets).
    pub receiver: Principal,
    pub status: RequestStatusView,
}

/// What the server knows, looked up by id.
pub trait StateSource {
    fn canister(&self, id: &Principal) -> Option<CanisterView>;
    fn request(&self, id: &[u8; 32]) -> Option<RequestView>;
}

/// Where a read_state request arrived: `/api/v{2,3}/canister/<ecid>/read_state` or `/api/v{2,3}/subnet/<sid>/read_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Canister(Principal),
    Subnet(Principal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    V2,
    V3,
}

/// A refused read_state request: the HTTP status and the replica's plain-text body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {message}")]
pub struct ReadStateError {
    pub status: u16,
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> ReadStateError {
    ReadStateError { status, message: message.into() }
}

fn parse_principal(bytes: &[u8]) -> Result<Principal, ReadStateError> {
    Principal::try_from_slice(bytes).map_err(|e| refuse(400, format!("Could not parse principal ID: {e}.")))
}

fn same_principal(requested: &Principal, effective: &Principal) -> Result<(), ReadStateError> {
    if requested == effective {
        return Ok(());
    }
    Err(refuse(400, format!("Effective principal id in URL {} does not match requested principal id: {}.", effective.to_text(), requested.to_text())))
}

/// Checks the paths of a read_state request as the replica does (dfinity/ic
/// `rs/http_endpoints/public/src/read_state.rs` `verify_paths`, after the validator's limits):
/// which paths each endpoint serves, that `/canister/<cid>/…` names the effective canister,
/// that all `request_status` paths name one request and that it was signed by `sender` for a
/// canister among the sender's delegation `targets` (`None`: no restriction), and that private
/// metadata is read by controllers only. `/subnet/<sid>/canister_ranges` is served on v3 only
/// for the NNS subnet, which this subnet is (it has no delegation). Errors carry the replica's
/// status and text.
pub fn check_paths(
    paths: &[Vec<Vec<u8>>],
    endpoint: Endpoint,
    version: ApiVersion,
    sender: Principal,
    targets: Option<&[Principal]>,
    source: &dyn StateSource,
    subnet: &SubnetView,
) -> Result<(), ReadStateError> {
    if paths.len() > MAX_PATHS {
        return Err(refuse(400, format!("Too many paths in read state request: got {} paths, but at most {MAX_PATHS} are allowed", paths.len())));
    }
    if let Some(path) = paths.iter().find(|path| path.len() > MAX_LABELS_PER_PATH) {
        return Err(refuse(
            400,
            format!("At least one path in read state request is too deep: got {} labels, but at most {MAX_LABELS_PER_PATH} are allowed", path.len()),
        ));
    }
    let (effective, at_canister) = match endpoint {
        Endpoint::Canister(id) => (id, true),
        Endpoint::Subnet(id) => (id, false),
    };
    let mut request_id: Option<[u8; 32]> = None;
    for path in paths {
        let path: Vec<&[u8]> = path.iter().map(Vec::as_slice).collect();
        match path.as_slice() {
            [b"time"] => {}
            [b"canister", canister_id, b"controllers" | b"module_hash"] if at_canister => same_principal(&parse_principal(canister_id)?, &effective)?,
            [b"canister", canister_id, b"metadata", name] if at_canister => {
                let name = String::from_utf8(name.to_vec()).map_err(|e| refuse(400, format!("Could not parse the custom section name: {e}.")))?;
                let canister_id = parse_principal(canister_id)?;
                same_principal(&canister_id, &effective)?;
                if let Some(canister) = source.canister(&canister_id) {
                    let private = canister.metadata.iter().any(|(n, visibility, _)| *n == name && *visibility == Visibility::Private);
                    if private && !canister.controllers.contains(&sender) {
                        let name: String = name.chars().take(100).collect();
                        return Err(refuse(403, format!("Custom section {name} can only be requested by the controllers of the canister.")));
                    }
                }
            }
            [b"api_boundary_nodes"] | [b"api_boundary_nodes", _] | [b"api_boundary_nodes", _, b"domain" | b"ipv4_address" | b"ipv6_address"] => {}
            [b"subnet"]
            | [b"subnet", _]
            | [b"subnet", _, b"public_key" | b"type" | b"node"]
            | [b"subnet", _, b"node", _]
            | [b"subnet", _, b"node", _, b"public_key"] => {}
            [b"subnet", subnet_id, b"metrics"] if !at_canister => same_principal(&parse_principal(subnet_id)?, &effective)?,
            [b"subnet", _, b"canister_ranges"] if version == ApiVersion::V2 => {}
            [b"subnet", subnet_id, b"canister_ranges"] if version == ApiVersion::V3 && parse_principal(subnet_id)? == subnet.subnet_id => {}
            [b"canister_ranges", _] if !at_canister => {}
            [b"request_status", id] | [b"request_status", id, b"status" | b"reply" | b"reject_code" | b"reject_message" | b"error_code"]
                if at_canister || version == ApiVersion::V3 =>
            {
                let id: [u8; 32] =
                    (*id).try_into().map_err(|_| refuse(400, "Invalid request id in paths. Maybe the request ID is not of 32 bytes in length?!"))?;
                if let Some(previous) = request_id.filter(|previous| *previous != id) {
                    return Err(refuse(
                        400,
                        format!(
                            "More than one non-unique request ID exists in request_status paths: {} and {}.",
                            hex::encode(previous),
                            hex::encode(id)
                        ),
                    ));
                }
                request_id = Some(id);
                if let Some(request) = source.request(&id) {
                    if request.sender != sender {
                        return Err(refuse(403, "The user tries to access Request ID not signed by the caller."));
                    }
                    if targets.is_some_and(|targets| !targets.contains(&request.receiver)) {
                        return Err(refuse(403, "The user tries to access request IDs for canisters not belonging to sender delegation targets."));
                    }
                }
            }
            _ => return Err(refuse(404, "Invalid path requested.")),
        }
    }
    Ok(())
}

/// The state tree restricted to `paths` and `/time`. A path names its whole subtree
/// (`["subnet"]` is every subnet's keys, ranges and nodes); what a path names but the state lacks
/// is absent from the tree, and so provably absent. Call [`check_paths`] first.
pub fn tree_for(paths: &[Vec<Vec<u8>>], time_ns: u64, subnet: &SubnetView, source: &dyn StateSource) -> HashTree {
    let mut canisters = BTreeMap::new();
    let mut requests = BTreeMap::new();
    for path in paths {
        match path.as_slice() {
            [root, id, ..] if root == b"canister" => {
                if let Some(canister) = Principal::try_from_slice(id).ok().and_then(|id| source.canister(&id)) {
                    canisters.insert(id.clone(), canister_node(&canister));
                }
            }
            [root, id, ..] if root == b"request_status" => {
                if let Some(request) = <[u8; 32]>::try_from(id.as_slice()).ok().and_then(|id| source.request(&id)) {
                    requests.insert(id.clone(), request_node(&request.status));
                }
            }
            _ => {}
        }
    }
    let sid = subnet.subnet_id.as_slice().to_vec();
    let state = Node::Sub(BTreeMap::from([
        (b"canister".to_vec(), Node::Sub(canisters)),
        (b"canister_ranges".to_vec(), Node::Sub(BTreeMap::from([(sid.clone(), range_shards(&subnet.canister_ranges))]))),
        (b"request_status".to_vec(), Node::Sub(requests)),
        (b"subnet".to_vec(), Node::Sub(BTreeMap::from([(sid, subnet_node(subnet))]))),
        (b"time".to_vec(), Node::Leaf(uleb128(time_ns))),
    ]));
    let mut selection = Selection::default();
    for path in paths {
        selection.insert(path);
    }
    selection.insert(&[b"time".to_vec()]);
    selection.select(&state).into_hash_tree()
}

/// The tree of a data certificate (`ic0.data_certificate_copy`): `/canister/<cid>/certified_data` and `/time`.
pub fn certified_data_tree(canister_id: Principal, certified_data: &[u8], time_ns: u64) -> HashTree {
    let canister = sub([("certified_data", Node::Leaf(certified_data.to_vec()))]);
    let canisters = Node::Sub(BTreeMap::from([(canister_id.as_slice().to_vec(), canister)]));
    sub([("canister", canisters), ("time", Node::Leaf(uleb128(time_ns)))]).into_hash_tree()
}

/// A nat in unsigned LEB128, as `/time` and `reject_code` hold it.
pub fn uleb128(mut value: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// CBOR with the self-describe tag 55799, as the replica writes state-tree values and responses.
pub(crate) fn tagged_cbor<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut serializer = serde_cbor::Serializer::new(Vec::new());
    serializer.self_describe().expect("writing to a Vec cannot fail");
    value.serialize(&mut serializer).expect("the values serialized here (bytes, text, nats, principals, their arrays and maps) always encode");
    serializer.into_inner()
}

/// A labeled tree: the state before it becomes a hash tree.
#[derive(Debug, Clone)]
enum Node {
    Leaf(Vec<u8>),
    Sub(BTreeMap<Vec<u8>, Node>),
}

fn sub<const N: usize>(children: [(&str, Node); N]) -> Node {
    Node::Sub(children.into_iter().map(|(name, node)| (name.as_bytes().to_vec(), node)).collect())
}

impl Node {
    /// Forks balanced over the children in label order; an empty subtree is `Empty`.
    fn into_hash_tree(self) -> HashTree {
        match self {
            Node::Leaf(value) => leaf(value),
            Node::Sub(children) => balanced(children.into_iter().map(|(name, node)| label(name, node.into_hash_tree())).collect()),
        }
    }
}

fn balanced(mut trees: Vec<HashTree>) -> HashTree {
    match trees.len() {
        0 => empty(),
        1 => trees.pop().expect("one tree"),
        n => {
            let right = trees.split_off(n / 2);
            fork(balanced(trees), balanced(right))
        }
    }
}

fn subnet_node(subnet: &SubnetView) -> Node {
    let nodes = subnet.nodes.iter().map(|(id, der)| (id.as_slice().to_vec(), sub([("public_key", Node::Leaf(der.clone()))]))).collect();
    sub([
        ("canister_ranges", Node::Leaf(tagged_cbor(&sorted_ranges(&subnet.canister_ranges)))),
        ("node", Node::Sub(nodes)),
        ("public_key", Node::Leaf(subnet.public_key_der.clone())),
        ("type", Node::Leaf(subnet.subnet_type.as_bytes().to_vec())),
    ])
}

fn sorted_ranges(ranges: &[(Principal, Principal)]) -> Vec<(Principal, Principal)> {
    let mut ranges = ranges.to_vec();
    ranges.sort_by(|a, b| a.0.as_slice().cmp(b.0.as_slice()));
    ranges
}

/// `/canister_ranges/<sid>`: one shard per range, labeled by the range's start, holding `[[lo, hi]]`.
fn range_shards(ranges: &[(Principal, Principal)]) -> Node {
    Node::Sub(sorted_ranges(ranges).into_iter().map(|range| (range.0.as_slice().to_vec(), Node::Leaf(tagged_cbor(&[range])))).collect())
}

fn canister_node(canister: &CanisterView) -> Node {
    let mut children = BTreeMap::new();
    children.insert(b"certified_data".to_vec(), Node::Leaf(canister.certified_data.clone()));
    children.insert(b"controllers".to_vec(), Node::Leaf(tagged_cbor(&canister.controllers)));
    if let Some(hash) = canister.module_hash {
        children.insert(b"module_hash".to_vec(), Node::Leaf(hash.to_vec()));
        let metadata = canister.metadata.iter().map(|(name, _, content)| (name.as_bytes().to_vec(), Node::Leaf(content.clone()))).collect();
        children.insert(b"metadata".to_vec(), Node::Sub(metadata));
    }
    Node::Sub(children)
}

fn request_node(status: &RequestStatusView) -> Node {
    let text = |s: &str| Node::Leaf(s.as_bytes().to_vec());
    match status {
        RequestStatusView::Received => sub([("status", text("received"))]),
        RequestStatusView::Processing => sub([("status", text("processing"))]),
        RequestStatusView::Done => sub([("status", text("done"))]),
        RequestStatusView::Replied(reply) => sub([("reply", Node::Leaf(reply.clone())), ("status", text("replied"))]),
        RequestStatusView::Rejected { code, message, error_code } => sub([
            ("error_code", text(error_code)),
            ("reject_code", Node::Leaf(uleb128(*code))),
            ("reject_message", text(message)),
            ("status", text("rejected")),
        ]),
    }
}

/// The requested paths as a trie: `whole` where a path ends (its subtree is kept entirely).
#[derive(Default)]
struct Selection {
    whole: bool,
    children: BTreeMap<Vec<u8>, Selection>,
}

impl Selection {
    fn insert(&mut self, path: &[Vec<u8>]) {
        match path.split_first() {
            None => self.whole = true,
            Some((first, rest)) => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    fn select(&self, node: &Node) -> Node {
        match node {
            _ if self.whole => node.clone(),
            Node::Leaf(_) => node.clone(),
            Node::Sub(children) => Node::Sub(
                self.children
                    .iter()
                    .filter_map(|(name, selection)| children.get(name).map(|child| (name.clone(), selection.select(child))))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ic_certification::LookupResult;
    use sha2::{Digest, Sha256};
    use std::collections::HashMap;

    // The digest of a hash tree computed from the specification's definition (IC interface
    // specification, "Certification", "Encoding of certificates"), independently of ic-certification.
    fn domain_sep(name: &str) -> Sha256 {
        let mut h = Sha256::new();
        h.update([name.len() as u8]);
        h.update(name.as_bytes());
        h
    }
    fn h_empty() -> [u8; 32] {
        domain_sep("ic-hashtree-empty").finalize().into()
    }
    fn h_fork(l: [u8; 32], r: [u8; 32]) -> [u8; 32] {
        let mut h = domain_sep("ic-hashtree-fork");
        h.update(l);
        h.update(r);
        h.finalize().into()
    }
    fn h_labeled(name: &[u8], t: [u8; 32]) -> [u8; 32] {
        let mut h = domain_sep("ic-hashtree-labeled");
        h.update(name);
        h.update(t);
        h.finalize().into()
    }
    fn h_leaf(v: &[u8]) -> [u8; 32] {
        let mut h = domain_sep("ic-hashtree-leaf");
        h.update(v);
        h.finalize().into()
    }

    #[test]
    fn the_hand_digest_gives_the_specifications_example_root_hash() {
        // The example tree of the specification's "Certification" section.
        let a = h_labeled(b"a", h_fork(h_fork(h_labeled(b"x", h_leaf(b"hello")), h_empty()), h_labeled(b"y", h_leaf(b"world"))));
        let root = h_fork(h_fork(a, h_labeled(b"b", h_leaf(b"good"))), h_fork(h_labeled(b"c", h_empty()), h_labeled(b"d", h_leaf(b"morning"))));
        assert_eq!(hex::encode(root), "eb5c5b2195e62d996b84c9bcc8259d19a83786a2f59e0878cec84c811f669aa0");
        // ic-certification agrees on the same tree.
        let tree: HashTree = fork(
            fork(
                label("a", fork(fork(label("x", leaf(b"hello".to_vec())), empty()), label("y", leaf(b"world".to_vec())))),
                label("b", leaf(b"good".to_vec())),
            ),
            fork(label("c", empty()), label("d", leaf(b"morning".to_vec()))),
        );
        assert_eq!(tree.digest(), root);
    }

    #[test]
    fn labeled_trees_become_balanced_sorted_hash_trees() {
        // Children given out of order come out sorted as blobs, forks balanced.
        let node = sub([
            ("d", Node::Leaf(b"morning".to_vec())),
            ("a", sub([("y", Node::Leaf(b"world".to_vec())), ("x", Node::Leaf(b"hello".to_vec()))])),
            ("c", sub([])),
            ("b", Node::Leaf(b"good".to_vec())),
        ]);
        let a = h_labeled(b"a", h_fork(h_labeled(b"x", h_leaf(b"hello")), h_labeled(b"y", h_leaf(b"world"))));
        let expected = h_fork(h_fork(a, h_labeled(b"b", h_leaf(b"good"))), h_fork(h_labeled(b"c", h_empty()), h_labeled(b"d", h_leaf(b"morning"))));
        assert_eq!(node.into_hash_tree().digest(), expected);
        // Three children: the left fork takes one, the right two.
        let three = sub([("a", Node::Leaf(vec![1])), ("b", Node::Leaf(vec![2])), ("c", Node::Leaf(vec![3]))]).into_hash_tree();
        assert_eq!(three.digest(), h_fork(h_labeled(b"a", h_leaf(&[1])), h_fork(h_labeled(b"b", h_leaf(&[2])), h_labeled(b"c", h_leaf(&[3])))));
        // Blob order, not text order: a shorter prefix first, then by byte.
        let blobs = sub([("ab", Node::Leaf(vec![])), ("a", Node::Leaf(vec![])), ("B", Node::Leaf(vec![]))]).into_hash_tree();
        let labels: Vec<Vec<u8>> = blobs.list_paths().into_iter().map(|p| p[0].as_bytes().to_vec()).collect();
        assert_eq!(labels, [b"B".to_vec(), b"a".to_vec(), b"ab".to_vec()]);
    }

    #[test]
    fn uleb128_encodes_as_the_spec_says() {
        assert_eq!(uleb128(0), [0]);
        assert_eq!(uleb128(127), [0x7f]);
        assert_eq!(uleb128(128), [0x80, 0x01]);
        assert_eq!(uleb128(624_485), [0xe5, 0x8e, 0x26]);
        assert_eq!(uleb128(u64::MAX), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    }

    struct Fixture {
        keys: SubnetKeys,
        subnet: SubnetView,
        canister: Principal,
        controller: Principal,
        canisters: HashMap<Principal, CanisterView>,
        requests: HashMap<[u8; 32], RequestView>,
    }

    impl StateSource for Fixture {
        fn canister(&self, id: &Principal) -> Option<CanisterView> {
            self.canisters.get(id).cloned()
        }
        fn request(&self, id: &[u8; 32]) -> Option<RequestView> {
            self.requests.get(id).cloned()
        }
    }

    fn fixture() -> Fixture {
        let keys = SubnetKeys::random();
        let ranges =
            vec![(Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 1, 1]), Principal::from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 1]))];
        let subnet = SubnetView::new(&keys, "application", ranges);
        let canister = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 7, 1, 1]);
        let controller = Principal::self_authenticating(b"controller");
        let view = CanisterView {
            module_hash: Some([9; 32]),
            controllers: vec![controller],
            metadata: vec![
                ("candid:service".to_string(), Visibility::Public, b"service : {}".to_vec()),
                ("secret".to_string(), Visibility::Private, b"s3cret".to_vec()),
            ],
            certified_data: vec![1, 2, 3],
        };
        let requests = HashMap::from([
            ([1; 32], RequestView { sender: controller, receiver: canister, status: RequestStatusView::Replied(b"DIDL\0\0".to_vec()) }),
            (
                [2; 32],
                RequestView {
                    sender: controller,
                    receiver: canister,
                    status: RequestStatusView::Rejected { code: 5, message: "trapped".to_string(), error_code: "IC0503".to_string() },
                },
            ),
        ]);
        Fixture { keys, subnet, canister, controller, canisters: HashMap::from([(canister, view)]), requests }
    }

    fn p(labels: &[&[u8]]) -> Vec<Vec<u8>> {
        labels.iter().map(|l| l.to_vec()).collect()
    }

    fn check(f: &Fixture, paths: &[Vec<Vec<u8>>], endpoint: Endpoint, version: ApiVersion, sender: Principal) -> Result<(), ReadStateError> {
        check_paths(paths, endpoint, version, sender, None, f, &f.subnet)
    }

    fn status(result: Result<(), ReadStateError>) -> u16 {
        result.map_or_else(|e| e.status, |()| 200)
    }

    #[test]
    fn paths_the_clients_read_are_allowed() {
        let f = fixture();
        let c = f.canister.as_slice();
        let sid = f.subnet.subnet_id.as_slice();
        let at_canister = [
            p(&[b"time"]),
            p(&[b"subnet"]),
            p(&[b"subnet", sid]),
            p(&[b"subnet", sid, b"public_key"]),
            p(&[b"subnet", sid, b"type"]),
            p(&[b"subnet", sid, b"canister_ranges"]),
            p(&[b"subnet", sid, b"node"]),
            p(&[b"canister", c, b"module_hash"]),
            p(&[b"canister", c, b"controllers"]),
            p(&[b"canister", c, b"metadata", b"candid:service"]),
            p(&[b"canister", c, b"metadata", b"no-such-section"]),
            p(&[b"request_status", &[1; 32]]),
            p(&[b"request_status", &[1; 32], b"status"]),
            p(&[b"request_status", &[1; 32], b"reply"]),
            p(&[b"api_boundary_nodes"]),
        ];
        for version in [ApiVersion::V2, ApiVersion::V3] {
            assert_eq!(check(&f, &at_canister, Endpoint::Canister(f.canister), version, f.controller), Ok(()));
            let at_subnet = [
                p(&[b"time"]),
                p(&[b"subnet", sid]),
                p(&[b"canister_ranges", sid]),
                p(&[b"subnet", sid, b"canister_ranges"]),
                p(&[b"subnet", sid, b"metrics"]),
            ];
            assert_eq!(check(&f, &at_subnet, Endpoint::Subnet(f.subnet.subnet_id), version, Principal::anonymous()), Ok(()));
        }
        // Request statuses are served at the subnet endpoint from v3 on.
        let rs = [p(&[b"request_status", &[1; 32], b"status"])];
        assert_eq!(check(&f, &rs, Endpoint::Subnet(f.subnet.subnet_id), ApiVersion::V3, f.controller), Ok(()));
        assert_eq!(status(check(&f, &rs, Endpoint::Subnet(f.subnet.subnet_id), ApiVersion::V2, f.controller)), 404);
        // An unknown request may be asked for by anyone: it is absent.
        assert_eq!(check(&f, &[p(&[b"request_status", &[3; 32]])], Endpoint::Canister(f.canister), ApiVersion::V3, Principal::anonymous()), Ok(()));
    }

    #[test]
    fn other_paths_are_not_found() {
        let f = fixture();
        let c = f.canister.as_slice();
        let sid = f.subnet.subnet_id.as_slice();
        let canister = Endpoint::Canister(f.canister);
        for path in [
            p(&[]),
            p(&[b"canister"]),
            p(&[b"canister", c]),
            p(&[b"canister", c, b"certified_data"]),
            p(&[b"canister", c, b"metadata"]),
            p(&[b"canister_ranges", sid]),
            p(&[b"subnet", sid, b"metrics"]),
            p(&[b"subnet", sid, b"public_key", b"x"]),
            p(&[b"time", b"x"]),
            p(&[b"request_status"]),
            p(&[b"request_status", &[1; 32], b"nothing"]),
            p(&[b"anything"]),
        ] {
            let e = check(&f, std::slice::from_ref(&path), canister, ApiVersion::V3, f.controller).unwrap_err();
            assert_eq!((e.status, e.message.as_str()), (404, "Invalid path requested."), "{path:?}");
        }
        // Canister paths are not served at the subnet endpoint.
        for path in [p(&[b"canister", c, b"module_hash"]), p(&[b"canister", c, b"metadata", b"candid:service"])] {
            assert_eq!(status(check(&f, &[path], Endpoint::Subnet(f.subnet.subnet_id), ApiVersion::V3, f.controller)), 404);
        }
    }

    #[test]
    fn canister_paths_must_name_the_effective_canister() {
        let f = fixture();
        let other = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 8, 1, 1]);
        for path in [p(&[b"canister", other.as_slice(), b"module_hash"]), p(&[b"canister", other.as_slice(), b"metadata", b"candid:service"])] {
            let e = check(&f, &[path], Endpoint::Canister(f.canister), ApiVersion::V3, f.controller).unwrap_err();
            assert_eq!(e.status, 400);
            assert_eq!(
                e.message,
                format!("Effective principal id in URL {} does not match requested principal id: {}.", f.canister.to_text(), other.to_text())
            );
        }
        let e = check(&f, &[p(&[b"canister", &[0; 30], b"controllers"])], Endpoint::Canister(f.canister), ApiVersion::V3, f.controller).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.starts_with("Could not parse principal ID: "), "{}", e.message);
        let e = check(
            &f,
            &[p(&[b"canister", f.canister.as_slice(), b"metadata", &[0xff]])],
            Endpoint::Canister(f.canister),
            ApiVersion::V3,
            f.controller,
        )
        .unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.starts_with("Could not parse the custom section name: "), "{}", e.message);
        // Subnet metrics name the effective subnet.
        let e = check(&f, &[p(&[b"subnet", other.as_slice(), b"metrics"])], Endpoint::Subnet(f.subnet.subnet_id), ApiVersion::V3, f.controller)
            .unwrap_err();
        assert_eq!(e.status, 400);
    }

    #[test]
    fn private_metadata_is_for_controllers_only() {
        let f = fixture();
        let path = [p(&[b"canister", f.canister.as_slice(), b"metadata", b"secret"])];
        assert_eq!(check(&f, &path, Endpoint::Canister(f.canister), ApiVersion::V3, f.controller), Ok(()));
        let e = check(&f, &path, Endpoint::Canister(f.canister), ApiVersion::V3, Principal::anonymous()).unwrap_err();
        assert_eq!((e.status, e.message.as_str()), (403, "Custom section secret can only be requested by the controllers of the canister."));
        // Public metadata is for everyone.
        assert_eq!(
            check(
                &f,
                &[p(&[b"canister", f.canister.as_slice(), b"metadata", b"candid:service"])],
                Endpoint::Canister(f.canister),
                ApiVersion::V3,
                Principal::anonymous()
            ),
            Ok(())
        );
    }

    #[test]
    fn request_status_paths_name_one_request_of_the_sender() {
        let f = fixture();
        let canister = Endpoint::Canister(f.canister);
        let e = check(&f, &[p(&[b"request_status", &[1; 31]])], canister, ApiVersion::V3, f.controller).unwrap_err();
        assert_eq!((e.status, e.message.as_str()), (400, "Invalid request id in paths. Maybe the request ID is not of 32 bytes in length?!"));
        let e = check(
            &f,
            &[p(&[b"request_status", &[1; 32], b"status"]), p(&[b"request_status", &[2; 32], b"status"])],
            canister,
            ApiVersion::V3,
            f.controller,
        )
        .unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(
            e.message,
            format!("More than one non-unique request ID exists in request_status paths: {} and {}.", hex::encode([1; 32]), hex::encode([2; 32]))
        );
        // The same request twice is fine.
        assert_eq!(
            check(
                &f,
                &[p(&[b"request_status", &[1; 32], b"status"]), p(&[b"request_status", &[1; 32], b"reply"])],
                canister,
                ApiVersion::V3,
                f.controller
            ),
            Ok(())
        );
        let e = check(&f, &[p(&[b"request_status", &[1; 32]])], canister, ApiVersion::V3, Principal::anonymous()).unwrap_err();
        assert_eq!((e.status, e.message.as_str()), (403, "The user tries to access Request ID not signed by the caller."));
        // A sender whose delegation does not target the request's canister.
        let other = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 8, 1, 1]);
        let e = check_paths(&[p(&[b"request_status", &[1; 32]])], canister, ApiVersion::V3, f.controller, Some(&[other]), &f, &f.subnet).unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (403, "The user tries to access request IDs for canisters not belonging to sender delegation targets.")
        );
        assert_eq!(
            check_paths(&[p(&[b"request_status", &[1; 32]])], canister, ApiVersion::V3, f.controller, Some(&[other, f.canister]), &f, &f.subnet),
            Ok(())
        );
    }

    #[test]
    fn flat_canister_ranges_on_v3_only_for_this_subnet() {
        let f = fixture();
        let other = Principal::self_authenticating(b"another subnet");
        let path = [p(&[b"subnet", other.as_slice(), b"canister_ranges"])];
        assert_eq!(status(check(&f, &path, Endpoint::Canister(f.canister), ApiVersion::V3, f.controller)), 404);
        assert_eq!(check(&f, &path, Endpoint::Canister(f.canister), ApiVersion::V2, f.controller), Ok(()));
        assert_eq!(
            status(check(&f, &[p(&[b"subnet", &[0; 30], b"canister_ranges"])], Endpoint::Canister(f.canister), ApiVersion::V3, f.controller)),
            400
        );
    }

    #[test]
    fn path_count_and_depth_are_limited() {
        let f = fixture();
        let canister = Endpoint::Canister(f.canister);
        assert_eq!(check(&f, &vec![p(&[b"time"]); MAX_PATHS], canister, ApiVersion::V3, f.controller), Ok(()));
        let e = check(&f, &vec![p(&[b"time"]); MAX_PATHS + 1], canister, ApiVersion::V3, f.controller).unwrap_err();
        assert_eq!((e.status, e.message.as_str()), (400, "Too many paths in read state request: got 1001 paths, but at most 1000 are allowed"));
        let e = check(&f, &[vec![b"time".to_vec(); MAX_LABELS_PER_PATH + 1]], canister, ApiVersion::V3, f.controller).unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (400, "At least one path in read state request is too deep: got 128 labels, but at most 127 are allowed")
        );
        // At the limit the depth check passes and the path rule answers.
        assert_eq!(status(check(&f, &[vec![b"time".to_vec(); MAX_LABELS_PER_PATH]], canister, ApiVersion::V3, f.controller)), 404);
    }

    #[test]
    fn trees_hold_what_was_asked_and_prove_the_rest_absent() {
        let f = fixture();
        let c = f.canister.as_slice();
        let sid = f.subnet.subnet_id.as_slice();
        let tree = tree_for(
            &[
                p(&[b"canister", c, b"module_hash"]),
                p(&[b"canister", c, b"metadata", b"candid:service"]),
                p(&[b"canister", c, b"metadata", b"missing"]),
            ],
            1_700_000_000_000_000_000,
            &f.subnet,
            &f,
        );
        assert_eq!(tree.lookup_path([b"time".as_slice()]), LookupResult::Found(&uleb128(1_700_000_000_000_000_000)));
        assert_eq!(tree.lookup_path([b"canister".as_slice(), c, b"module_hash"]), LookupResult::Found(&[9; 32]));
        assert_eq!(tree.lookup_path([b"canister".as_slice(), c, b"metadata", b"candid:service"]), LookupResult::Found(b"service : {}"));
        assert_eq!(tree.lookup_path([b"canister".as_slice(), c, b"metadata", b"missing"]), LookupResult::Absent);
        // Not asked: not there (the private section, the controllers, the subnet).
        assert_eq!(tree.lookup_path([b"canister".as_slice(), c, b"metadata", b"secret"]), LookupResult::Absent);
        assert_eq!(tree.lookup_path([b"canister".as_slice(), c, b"controllers"]), LookupResult::Absent);
        assert_eq!(tree.lookup_path([b"subnet".as_slice(), sid, b"public_key"]), LookupResult::Absent);
        // An unknown canister or request is absent.
        let unknown = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 8, 1, 1]);
        let tree = tree_for(&[p(&[b"canister", unknown.as_slice(), b"module_hash"]), p(&[b"request_status", &[3; 32]])], 5, &f.subnet, &f);
        assert_eq!(tree.lookup_path([b"canister".as_slice(), unknown.as_slice(), b"module_hash"]), LookupResult::Absent);
        assert_eq!(tree.lookup_path([b"request_status".as_slice(), &[3; 32], b"status"]), LookupResult::Absent);
        assert_eq!(tree.lookup_path([b"time".as_slice()]), LookupResult::Found(&[5]));
    }

    #[test]
    fn an_empty_canister_has_no_module_hash_nor_metadata() {
        let mut f = fixture();
        let c = f.canister;
        f.canisters.insert(c, CanisterView { controllers: vec![f.controller], ..CanisterView::default() });
        let tree = tree_for(
            &[
                p(&[b"canister", c.as_slice(), b"module_hash"]),
                p(&[b"canister", c.as_slice(), b"controllers"]),
                p(&[b"canister", c.as_slice(), b"metadata", b"candid:service"]),
            ],
            0,
            &f.subnet,
            &f,
        );
        assert_eq!(tree.lookup_path([b"canister".as_slice(), c.as_slice(), b"module_hash"]), LookupResult::Absent);
        assert_eq!(tree.lookup_path([b"canister".as_slice(), c.as_slice(), b"metadata", b"candid:service"]), LookupResult::Absent);
        let LookupResult::Found(controllers) = tree.lookup_path([b"canister".as_slice(), c.as_slice(), b"controllers"]) else {
            panic!("controllers")
        };
        assert_eq!(&controllers[..3], [0xd9, 0xd9, 0xf7], "tagged CBOR");
        assert_eq!(serde_cbor::from_slice::<Vec<Principal>>(controllers).unwrap(), vec![f.controller]);
    }

    #[test]
    fn request_status_subtrees_hold_the_reply_or_the_reject() {
        let f = fixture();
        let tree = tree_for(&[p(&[b"request_status", &[1; 32]])], 0, &f.subnet, &f);
        let at = |rid: &[u8], name: &[u8]| tree.lookup_path([b"request_status".as_slice(), rid, name]);
        assert_eq!(at(&[1; 32], b"status"), LookupResult::Found(b"replied"));
        assert_eq!(at(&[1; 32], b"reply"), LookupResult::Found(b"DIDL\0\0"));
        assert_eq!(at(&[1; 32], b"reject_code"), LookupResult::Absent);
        let tree = tree_for(
            &[
                p(&[b"request_status", &[2; 32], b"status"]),
                p(&[b"request_status", &[2; 32], b"reject_code"]),
                p(&[b"request_status", &[2; 32], b"reject_message"]),
                p(&[b"request_status", &[2; 32], b"error_code"]),
            ],
            0,
            &f.subnet,
            &f,
        );
        let at = |name: &[u8]| tree.lookup_path([b"request_status".as_slice(), &[2; 32], name]);
        assert_eq!(at(b"status"), LookupResult::Found(b"rejected"));
        assert_eq!(at(b"reject_code"), LookupResult::Found(&[5]));
        assert_eq!(at(b"reject_message"), LookupResult::Found(b"trapped"));
        assert_eq!(at(b"error_code"), LookupResult::Found(b"IC0503"));
    }

    #[test]
    fn the_subnet_subtree_has_keys_type_ranges_and_nodes() {
        let f = fixture();
        let sid = f.subnet.subnet_id.as_slice();
        let tree = tree_for(&[p(&[b"subnet"])], 0, &f.subnet, &f);
        assert_eq!(tree.lookup_path([b"subnet".as_slice(), sid, b"public_key"]), LookupResult::Found(&f.keys.root_key_der()));
        assert_eq!(tree.lookup_path([b"subnet".as_slice(), sid, b"type"]), LookupResult::Found(b"application"));
        assert_eq!(
            tree.lookup_path([b"subnet".as_slice(), sid, b"node", f.keys.node_id().as_slice(), b"public_key"]),
            LookupResult::Found(&f.keys.node_key_der())
        );
        let LookupResult::Found(ranges) = tree.lookup_path([b"subnet".as_slice(), sid, b"canister_ranges"]) else { panic!("flat ranges") };
        assert_eq!(&ranges[..3], [0xd9, 0xd9, 0xf7]);
        assert_eq!(serde_cbor::from_slice::<Vec<(Principal, Principal)>>(ranges).unwrap(), f.subnet.canister_ranges);
        // Another subnet is absent; the sharded ranges are their own root label.
        assert_eq!(tree.lookup_path([b"subnet".as_slice(), &[1, 2, 3], b"public_key"]), LookupResult::Absent);
        let lo = f.subnet.canister_ranges[0].0;
        assert_eq!(tree.lookup_path([b"canister_ranges".as_slice(), sid, lo.as_slice()]), LookupResult::Absent);
        let tree = tree_for(&[p(&[b"canister_ranges", sid])], 0, &f.subnet, &f);
        let LookupResult::Found(shard) = tree.lookup_path([b"canister_ranges".as_slice(), sid, lo.as_slice()]) else { panic!("shard") };
        assert_eq!(serde_cbor::from_slice::<Vec<(Principal, Principal)>>(shard).unwrap(), f.subnet.canister_ranges);
    }

    #[test]
    fn ranges_are_sorted_and_sharded_by_their_start() {
        let r = |lo: u8, hi: u8| (Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, lo, 1, 1]), Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, hi, 1, 1]));
        let keys = SubnetKeys::random();
        let subnet = SubnetView::new(&keys, "application", vec![r(20, 30), r(1, 9)]);
        let f = fixture();
        let sid = subnet.subnet_id.as_slice();
        let tree = tree_for(&[p(&[b"canister_ranges", sid]), p(&[b"subnet", sid, b"canister_ranges"])], 0, &subnet, &f);
        let LookupResult::Found(flat) = tree.lookup_path([b"subnet".as_slice(), sid, b"canister_ranges"]) else { panic!("flat") };
        assert_eq!(serde_cbor::from_slice::<Vec<(Principal, Principal)>>(flat).unwrap(), vec![r(1, 9), r(20, 30)]);
        let shards: Vec<Vec<u8>> =
            tree.list_paths().into_iter().filter(|p| p[0].as_bytes() == b"canister_ranges").map(|p| p[2].as_bytes().to_vec()).collect();
        assert_eq!(shards, [r(1, 9).0.as_slice().to_vec(), r(20, 30).0.as_slice().to_vec()]);
    }

    #[test]
    fn the_certified_data_tree_has_the_data_and_the_time() {
        let c = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 7, 1, 1]);
        let tree = certified_data_tree(c, &[4; 32], 300);
        assert_eq!(tree.lookup_path([b"canister".as_slice(), c.as_slice(), b"certified_data"]), LookupResult::Found(&[4; 32]));
        assert_eq!(tree.lookup_path([b"time".as_slice()]), LookupResult::Found(&uleb128(300)));
        let expected = h_fork(
            h_labeled(b"canister", h_labeled(c.as_slice(), h_labeled(b"certified_data", h_leaf(&[4; 32])))),
            h_labeled(b"time", h_leaf(&uleb128(300))),
        );
        assert_eq!(tree.digest(), expected);
    }
}
