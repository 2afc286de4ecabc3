//! Every published and SDK-computed vector, one test case each (named by its label), checked stage
//! by stage so a failure names the vector and the step. Parameters reach the signer as the file
//! lists them — unsorted, as a raw ordered list — and once more in reverse, so the signer's own
//! sort is what puts them in order.

use std::fmt;

use ecs_gateway::aliyun::signer::{SigningKey, canonicalized_query, sign_query, string_to_sign};
use libtest_mimic::{Arguments, Failed, Trial};
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    label: String,
    input: Input,
    expect: Expect,
}

#[derive(Deserialize)]
struct Input {
    method: String,
    secret: String,
    params: RawParams,
    /// Form-body parameters, signed together with the query ones.
    #[serde(default)]
    body_params: RawParams,
}

#[derive(Deserialize)]
struct Expect {
    canonicalized_query: String,
    string_to_sign: String,
    signature: String,
    signature_query_component: String,
}

/// A JSON object's entries in file order, repeated names kept: what a map would sort or merge.
#[derive(Default)]
struct RawParams(Vec<(String, String)>);

impl<'de> Deserialize<'de> for RawParams {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = RawParams;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of string parameters")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawParams, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, String>()? {
                    entries.push(entry);
                }
                Ok(RawParams(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("data/rpc-signature-vectors.json");
    let file: File = serde_json::from_str(text).expect("vector file parses");
    assert_eq!(file.vectors.len(), 24, "the reference ships 24 vectors");
    file.vectors
}

fn stage(name: &str, got: &str, want: &str) -> Result<(), Failed> {
    if got == want {
        Ok(())
    } else {
        Err(format!("stage {name}:\n   got {got}\n  want {want}").into())
    }
}

/// Runs every stage of one vector with its parameters in `params` order.
fn check(v: &Vector, params: &[(String, String)]) -> Result<(), Failed> {
    let e = &v.expect;
    stage(
        "canonicalized_query",
        &canonicalized_query(params),
        &e.canonicalized_query,
    )?;
    // Each later stage starts from the vector's own previous stage, so it is checked in isolation.
    stage(
        "string_to_sign",
        &string_to_sign(&v.input.method, &e.canonicalized_query),
        &e.string_to_sign,
    )?;
    let key = SigningKey::new(&v.input.secret);
    stage("signature", &key.sign(&e.string_to_sign), &e.signature)?;
    let signed = sign_query(&v.input.method, params, &key);
    let want = format!("{}&{}", e.canonicalized_query, e.signature_query_component);
    stage("signed_query", signed.as_str(), &want)
}

fn trial(v: Vector) -> Trial {
    Trial::test(v.label.clone(), move || {
        let mut params = v.input.params.0.clone();
        params.extend(v.input.body_params.0.iter().cloned());
        check(&v, &params)?;
        params.reverse();
        check(&v, &params).map_err(|e| format!("with the parameters reversed: {e:?}").into())
    })
}

/// Without the trailing "&" on the key no published vector matches: proves the key is built so.
fn the_key_is_the_secret_followed_by_an_ampersand() -> Result<(), Failed> {
    use base64::Engine as _;
    use hmac::Mac as _;
    let v = &vectors()[0];
    let mut bare = hmac::Hmac::<sha1::Sha1>::new_from_slice(v.input.secret.as_bytes()).unwrap();
    bare.update(v.expect.string_to_sign.as_bytes());
    let bare = base64::engine::general_purpose::STANDARD.encode(bare.finalize().into_bytes());
    if bare == v.expect.signature {
        return Err("a bare-secret key matched; the vector cannot tell the keys apart".into());
    }
    stage(
        "signature",
        &SigningKey::new(&v.input.secret).sign(&v.expect.string_to_sign),
        &v.expect.signature,
    )
}

fn main() {
    let args = Arguments::from_args();
    let mut trials: Vec<Trial> = vectors().into_iter().map(trial).collect();
    trials.push(Trial::test(
        "the key is the secret followed by an ampersand",
        the_key_is_the_secret_followed_by_an_ampersand,
    ));
    libtest_mimic::run(&args, trials).exit();
}
