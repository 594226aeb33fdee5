//! The fetch itself, on a blocking thread: git protocol v2 over [`PinnedHttp`], one `want` (the
//! commit), `deepen 1`, no `have`s, the pack written and indexed into the job's object directory.
//!
//! gix-protocol's building blocks are used directly rather than `gix::Remote::prepare_fetch`:
//! that path always runs `ls-refs`, which with only an object id to fetch has no prefix to filter
//! on and lists every ref of the project (tens of thousands of merge request refs on a large
//! one), and it reads refspecs, negotiation and credential helpers from git configuration. Here
//! there is no repository configuration at all, and by-id fetches take two requests (like
//! `git fetch <sha>`, which skips `ls-refs` too).

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use gix_hash::ObjectId;
use gix_object::bstr::BString;
use gix_protocol::fetch::negotiate::{self, Round};
use gix_protocol::fetch::{Arguments, Context, Negotiate, Options, Shallow, Tags};
use gix_protocol::handshake::Ref;
use gix_protocol::ls_refs::RefPrefixes;
use gix_protocol::transport::client::blocking_io::http::Transport;
use gix_protocol::transport::{Protocol, Service};
use gix_utils::progress::Discard;

use super::bridge::PinnedHttp;

/// What the server sent.
pub(super) struct Received {
    /// Objects in the pack.
    pub(super) objects: u64,
}

/// Why the fetch stopped, before the wire's own record is consulted.
#[derive(Debug)]
pub(super) enum Failure {
    /// The server would not send the commit by id ("not our ref"): unknown there, or a server
    /// that only serves advertised tips.
    NotOurRef,
    /// The ref did not point at the commit (it moved, or is gone).
    RefMoved,
    /// Something this fetcher does not speak.
    Unsupported(&'static str),
    /// gix's error chain, for the log and a bounded, cleaned message.
    Gix(String),
}

impl From<gix_error::Error> for Failure {
    fn from(error: gix_error::Error) -> Self {
        // The alternate form joins the whole chain; the server's "not our ref" is deep inside.
        let text = format!("{error:#}");
        if text.contains("not our ref") { Self::NotOurRef } else { Self::Gix(text) }
    }
}

/// Fetches `want` at depth 1 into `objects_dir/pack`. Asks for the id first; when the server
/// refuses it and `ref_name` is known, lists that one ref and fetches it if it still points at
/// `want`.
pub(super) fn fetch_pack(
    http: &PinnedHttp,
    repo_url: &str,
    want: ObjectId,
    ref_name: Option<&str>,
    objects_dir: &Path,
    max_object_bytes: usize,
    interrupt: &AtomicBool,
) -> Result<Received, Failure> {
    let attempt = |via_ref| fetch_once(http.clone(), repo_url, want, via_ref, objects_dir, max_object_bytes, interrupt);
    match attempt(None) {
        Err(Failure::NotOurRef) if ref_name.is_some() => {
            tracing::debug!("the server refused the commit by id; fetching through its ref");
            attempt(ref_name)
        }
        other => other,
    }
}

fn agent() -> gix_protocol::command::Feature {
    ("agent", Some(gix_protocol::agent(concat!("gitlab-connector/", env!("CARGO_PKG_VERSION")))))
}

fn fetch_once(
    http: PinnedHttp,
    repo_url: &str,
    want: ObjectId,
    via_ref: Option<&str>,
    objects_dir: &Path,
    max_object_bytes: usize,
    interrupt: &AtomicBool,
) -> Result<Received, Failure> {
    let url = repo_url.try_into().map_err(|_| Failure::Unsupported("the repository URL"))?;
    let mut transport = Transport::new_http(http, url, Protocol::V2, false);
    // A 401 comes back as `PermissionDenied`; gix then asks for credentials, and there are none
    // to give: the token travels only inside `git_request`, never through gix.
    let mut handshake =
        gix_protocol::handshake(&mut transport, Service::UploadPack, |_| Ok(None), Vec::new(), &mut Discard)?;
    if handshake.server_protocol_version != Protocol::V2 {
        return Err(Failure::Unsupported("servers without git protocol v2"));
    }
    if let Some(format) = handshake.capabilities.capability("object-format").and_then(|c| c.value())
        && format != "sha1"
    {
        return Err(Failure::Unsupported("SHA-256 repositories"));
    }
    if let Some(name) = via_ref {
        let mut prefixes = RefPrefixes::new();
        prefixes.extend([BString::from(name)]);
        let refs = gix_protocol::LsRefsCommand::new(Some(prefixes), &handshake.capabilities, agent()).invoke_blocking(
            &mut transport,
            &mut Discard,
            false,
        )?;
        if tip(&refs, name) != Some(want) {
            return Err(Failure::RefMoved);
        }
    }
    let shallow = Shallow::DepthAtRemote(NonZeroU32::MIN);
    let pack_dir = objects_dir.join("pack");
    let options = gix_pack::bundle::write::Options {
        thread_limit: Some(1),
        // Inflating a "zip bomb" object stops here rather than at the memory limit.
        alloc_limit_bytes: Some(max_object_bytes),
        ..Default::default()
    };
    let mut objects = None;
    let outcome = gix_protocol::fetch(
        &mut WantOne(want),
        |pack, progress, should_interrupt| {
            let written = gix_pack::Bundle::write_to_directory(
                pack,
                Some(&pack_dir),
                progress,
                should_interrupt,
                // No `have`s were sent, so a thin pack would be a protocol violation.
                None::<gix_object::find::Never>,
                gix_hash::Kind::Sha1,
                options,
            )?;
            objects = Some(u64::from(written.index.num_objects));
            Ok(true)
        },
        Discard,
        interrupt,
        Context { handshake: &mut handshake, transport: &mut transport, user_agent: agent(), trace_packetlines: false },
        Options {
            shallow_file: objects_dir.join("shallow"),
            shallow: &shallow,
            tags: Tags::None,
            reject_shallow_remote: false,
        },
    )?;
    match (outcome, objects) {
        (Some(_), Some(objects)) => Ok(Received { objects }),
        _ => Err(Failure::Gix("the server sent no pack".into())),
    }
}

/// The object a listed ref points at (peeled through an annotated tag).
fn tip(refs: &[Ref], name: &str) -> Option<ObjectId> {
    refs.iter().find_map(|r| match r {
        Ref::Direct { full_ref_name, object }
        | Ref::Peeled { full_ref_name, object, .. }
        | Ref::Symbolic { full_ref_name, object, .. }
            if full_ref_name == name =>
        {
            Some(*object)
        }
        _ => None,
    })
}

/// Negotiation for an empty object database: want the one commit, have nothing, done at once.
struct WantOne(ObjectId);

impl Negotiate for WantOne {
    fn mark_complete_and_common_ref(&mut self) -> gix_error::Result<negotiate::Action> {
        Ok(negotiate::Action::MustNegotiate { remote_ref_target_known: Vec::new() })
    }

    fn add_wants(&mut self, arguments: &mut Arguments, _remote_ref_target_known: &[bool]) -> bool {
        arguments.want(self.0);
        true
    }

    fn one_round(
        &mut self,
        _state: &mut negotiate::one_round::State,
        _arguments: &mut Arguments,
        _previous_response: Option<&gix_protocol::fetch::Response>,
    ) -> gix_error::Result<(Round, bool)> {
        let round =
            Round { haves_sent: 0, in_vain: 0, haves_to_send: 0, previous_response_had_at_least_one_in_common: false };
        Ok((round, true))
    }
}
