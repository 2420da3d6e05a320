//! Message executions: their kinds, which System API functions each kind may call (one table,
//! [`AVAILABILITY`]), and the [`Message`] being executed.

use candid::Principal;

/// The kinds of message execution, which decide which System API functions are available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The wasm start function, run at instantiation outside any message.
    Start,
    Init,
    PreUpgrade,
    PostUpgrade,
    Update,
    /// A non-replicated query.
    Query,
    /// A query method called as an update (an ingress call): runs replicated, its changes
    /// discarded.
    ReplicatedQuery,
    InspectMessage,
    ReplyCallback,
    RejectCallback,
    Cleanup,
    Timer,
}

impl Kind {
    /// Whether a committed execution of this kind changes the canister version, as on the IC
    /// (updates, callbacks and timers; an install or upgrade counts once, as a whole).
    pub fn bumps_version(self) -> bool {
        matches!(self, Kind::Update | Kind::ReplyCallback | Kind::RejectCallback | Kind::Cleanup | Kind::Timer)
    }

    /// Whether the IC runs it on every replica (`ic0.in_replicated_execution`).
    pub fn replicated(self) -> bool {
        REPLICATED.contains(self)
    }

    /// The name the IC's trap messages use ("cannot be executed in … mode").
    pub fn name(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Init => "init",
            Kind::PreUpgrade => "pre_upgrade",
            Kind::PostUpgrade => "post_upgrade",
            Kind::Update => "update",
            Kind::Query => "query",
            Kind::ReplicatedQuery => "replicated query",
            Kind::InspectMessage => "inspect_message",
            Kind::ReplyCallback => "reply callback",
            Kind::RejectCallback => "reject callback",
            Kind::Cleanup => "cleanup",
            Kind::Timer => "global timer",
        }
    }
}

/// A set of message kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds(u16);

impl Kinds {
    const fn of(kinds: &[Kind]) -> Kinds {
        let mut bits = 0;
        let mut i = 0;
        while i < kinds.len() {
            bits |= 1 << kinds[i] as u16;
            i += 1;
        }
        Kinds(bits)
    }

    pub fn contains(self, kind: Kind) -> bool {
        self.0 & (1 << kind as u16) != 0
    }
}

use Kind::*;

/// Every message (not the start function).
const ALL: Kinds =
    Kinds::of(&[Init, PreUpgrade, PostUpgrade, Update, Query, ReplicatedQuery, InspectMessage, ReplyCallback, RejectCallback, Cleanup, Timer]);
/// Every message and the start function.
const ANYWHERE: Kinds = Kinds(ALL.0 | Kinds::of(&[Start]).0);
/// Messages that carry an argument.
const ARG: Kinds = Kinds::of(&[Init, PostUpgrade, Update, Query, ReplicatedQuery, InspectMessage, ReplyCallback]);
/// Messages that answer a call.
const REPLY: Kinds = Kinds::of(&[Update, Query, ReplicatedQuery, ReplyCallback, RejectCallback]);
/// Messages that may make calls.
const CALLS: Kinds = Kinds::of(&[Update, ReplyCallback, RejectCallback, Timer]);
const REPLICATED: Kinds = Kinds::of(&[Init, PreUpgrade, PostUpgrade, Update, ReplicatedQuery, ReplyCallback, RejectCallback, Cleanup, Timer]);
/// Replicated messages whose changes can commit (a query called as an update cannot set these).
const COMMITTING: Kinds = Kinds::of(&[Init, PreUpgrade, PostUpgrade, Update, ReplyCallback, RejectCallback, Cleanup, Timer]);
const INSPECT: Kinds = Kinds::of(&[InspectMessage]);
const CALLBACKS: Kinds = Kinds::of(&[ReplyCallback, RejectCallback, Cleanup]);
const REJECTED: Kinds = Kinds::of(&[RejectCallback]);
const QUERY: Kinds = Kinds::of(&[Query]);

/// Where each `ic0` function this host implements may be called, as the IC interface
/// specification's System API table has it (restricted to the kinds this host runs). A function
/// called elsewhere traps with the IC's message. `crate::ic0` registers exactly these functions.
pub const AVAILABILITY: &[(&str, Kinds)] = &[
    ("msg_arg_data_size", ARG),
    ("msg_arg_data_copy", ARG),
    ("msg_caller_size", ALL),
    ("msg_caller_copy", ALL),
    ("msg_reject_code", CALLBACKS),
    ("msg_reject_msg_size", REJECTED),
    ("msg_reject_msg_copy", REJECTED),
    ("msg_reply_data_append", REPLY),
    ("msg_reply", REPLY),
    ("msg_reject", REPLY),
    ("msg_method_name_size", INSPECT),
    ("msg_method_name_copy", INSPECT),
    ("accept_message", INSPECT),
    ("msg_cycles_available128", ALL),
    ("msg_cycles_refunded128", ALL),
    ("msg_cycles_accept128", REPLY),
    ("canister_self_size", ALL),
    ("canister_self_copy", ALL),
    ("canister_cycle_balance128", ALL),
    ("canister_liquid_cycle_balance128", ALL),
    ("canister_status", ALL),
    ("canister_version", ALL),
    ("in_replicated_execution", ALL),
    ("is_controller", ALL),
    ("time", ALL),
    ("global_timer_set", COMMITTING),
    ("performance_counter", ALL),
    ("stable64_size", ALL),
    ("stable64_grow", ALL),
    ("stable64_read", ALL),
    ("stable64_write", ALL),
    ("call_new", CALLS),
    ("call_on_cleanup", CALLS),
    ("call_data_append", CALLS),
    ("call_with_best_effort_response", CALLS),
    ("call_cycles_add128", CALLS),
    ("cost_call", ALL),
    ("call_perform", CALLS),
    ("debug_print", ANYWHERE),
    ("trap", ANYWHERE),
    ("certified_data_set", COMMITTING),
    ("data_certificate_present", ALL),
    // Only non-replicated queries are given a certificate.
    ("data_certificate_size", QUERY),
    ("data_certificate_copy", QUERY),
];

/// Where `ic0.name` may be called; `None` if this host does not implement it.
pub fn availability(name: &str) -> Option<Kinds> {
    AVAILABILITY.iter().find(|(n, _)| *n == name).map(|&(_, kinds)| kinds)
}

/// One message execution.
#[derive(Debug, Clone)]
pub struct Message {
    pub kind: Kind,
    pub arg: Vec<u8>,
    pub caller: Principal,
    pub method: String,
    pub limit: u64,
    /// Reject code and message, for reject callbacks.
    pub reject: Option<(u32, String)>,
    pub reply_buffer: Vec<u8>,
    pub accepted: bool,
    /// The certificate of the certified data, which only non-replicated queries may be given.
    pub certificate: Option<Vec<u8>>,
    /// Whether it pays for the pages it writes (2026 accounting): all but queries and
    /// `inspect_message`, whose changes are discarded; composite queries pay.
    pub pays_writes: bool,
}

impl Message {
    pub fn new(kind: Kind, arg: Vec<u8>, caller: Principal, method: &str, limit: u64) -> Message {
        let pays_writes = !matches!(kind, Kind::Query | Kind::InspectMessage);
        Message {
            kind,
            arg,
            caller,
            method: method.to_string(),
            limit,
            reject: None,
            reply_buffer: Vec::new(),
            accepted: false,
            certificate: None,
            pays_writes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_each_function_once() {
        let mut names: Vec<&str> = AVAILABILITY.iter().map(|(n, _)| *n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), AVAILABILITY.len());
    }

    #[test]
    fn kind_sets() {
        assert!(ALL.contains(Update) && !ALL.contains(Start) && ANYWHERE.contains(Start));
        assert!(REPLY.contains(Query) && !REPLY.contains(Init) && !CALLS.contains(Query));
        assert!(Timer.replicated() && !Query.replicated() && !InspectMessage.replicated());
        assert_eq!(availability("trap"), Some(ANYWHERE));
        assert_eq!(availability("msg_arg_data_size"), Some(ARG));
        assert_eq!(availability("stable_size"), None, "the 32-bit stable API is not implemented");
    }
}
