//! `apim certs`: the deployment's PKI — a CA and a key and certificate per node and balancer,
//! and the key managers' JWT signing key with its public half for the gateways.

use crate::Outcome;
use crate::output::{self, Format};
use apim_compiler::Plan;
use std::path::PathBuf;

/// Make the certificates a deployment needs: a CA (or yours), then for every node and
/// balancer a key (0600) and a certificate from that CA.
///
/// A certificate names its host, its node or balancer name, the names the Kubernetes and
/// Compose outputs give it, and its SPIFFE ID (spiffe://DEPLOYMENT/node/NODE, or
/// /balancer/NAME), which the internal listeners check against the flows table. Run it again
/// after changing the topology: only missing certificates, certificates that no longer fit
/// the topology, and those expiring within 30 days are made anew. `apim-certs.json` in the
/// folder lists what was done.
#[derive(clap::Args)]
pub struct Args {
    /// The topology file.
    file: String,
    /// The folder to write (created 0700). Nodes read `/etc/apim/tls` unless told otherwise
    /// (`apim node --certs DIR`).
    #[arg(long, short, default_value = "certs")]
    output: PathBuf,
    /// Sign with this CA certificate instead of making one (needs --ca-key; the key is never
    /// copied into the folder).
    #[arg(long, requires = "ca_key")]
    ca_cert: Option<PathBuf>,
    /// The key of --ca-cert.
    #[arg(long, requires = "ca_cert")]
    ca_key: Option<PathBuf>,
    /// A host map (as `apim node --hosts` reads): each certificate also names the address
    /// the map gives its node or balancer.
    #[arg(long)]
    hosts: Option<String>,
    /// Make a new JWT signing key; the current one is kept as the previous, so the tokens it
    /// signed stay valid until they expire. Give the gateways the new `jwks.json` (or let
    /// them ask the key manager) before the key managers the new seed.
    #[arg(long)]
    rotate_signing_key: bool,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

pub fn run(args: Args) -> Outcome {
    let checked = match super::load_clean(&args.file, "no certificate was made") {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    let plan = Plan::of(&checked.topology);
    let ca = match (&args.ca_cert, &args.ca_key) {
        (Some(c), Some(k)) => match apim_pki::read_ca(c, k) {
            Ok(ca) => Some(ca),
            Err(e) => {
                output::error(&e);
                return Outcome::Failure;
            }
        },
        _ => None,
    };
    let hosts = match &args.hosts {
        Some(h) => match std::fs::read_to_string(h)
            .map_err(|e| format!("cannot read `{h}`: {e}"))
            .and_then(|t| apim_compiler::HostMap::parse(&t))
        {
            Ok(m) => Some(m),
            Err(e) => {
                output::error(&e);
                return Outcome::Failure;
            }
        },
        None => None,
    };
    let subjects = apim_pki::subjects_mapped(&plan, hosts.as_ref());
    let mut written = match apim_pki::write_dir(&plan.deployment, &subjects, &args.output, ca) {
        Ok(w) => w,
        Err(e) => {
            output::error(&e);
            return Outcome::Failure;
        }
    };
    match apim_runtime::signing::write(&args.output, args.rotate_signing_key) {
        Ok(files) => written.files.extend(files),
        Err(e) => {
            output::error(&e);
            return Outcome::Failure;
        }
    }
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&written).unwrap_or_default()),
        Format::Human => {
            for f in &written.files {
                match &f.why {
                    Some(why) => println!("{:<8} {} ({why})", f.action, f.path),
                    None => println!("{:<8} {}", f.action, f.path),
                }
            }
            println!("CA: {}", written.ca);
        }
    }
    Outcome::Success
}
