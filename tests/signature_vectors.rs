//! Every published and SDK-computed vector, V1 and V3, one test case each (named by its label),
//! checked stage by stage so a failure names the vector and the step. Parameters reach the signer as the file
//! lists them — unsorted, as a raw ordered list — and once more in reverse, so the signer's own
//! sort is what puts them in order.

use std::fmt;

use ecs_gateway::aliyun::signer::{
    SigningKey, canonicalized_query, sign_query, string_to_sign, v3,
};
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

#[derive(Deserialize)]
struct V3File {
    vectors: Vec<V3Vector>,
}

#[derive(Deserialize)]
struct V3Vector {
    label: String,
    input: V3Input,
    expect: V3Expect,
}

#[derive(Deserialize)]
struct V3Input {
    method: String,
    access_key_id: String,
    secret: String,
    query: RawParams,
    headers: RawParams,
    payload_sha256: String,
}

#[derive(Deserialize)]
struct V3Expect {
    canonical_query: String,
    canonical_headers: String,
    signed_headers: String,
    canonical_request: String,
    string_to_sign: String,
    signature: String,
    authorization: String,
}

fn v3_vectors() -> Vec<V3Vector> {
    let text = include_str!("data/v3-signature-vectors.json");
    let file: V3File = serde_json::from_str(text).expect("V3 vector file parses");
    assert_eq!(
        file.vectors.len(),
        6,
        "scripts/gen_sdk_v3_vectors.py writes 6 vectors"
    );
    file.vectors
}

/// Every V3 stage, each from the vector's own previous stage, then the whole signing.
fn check_v3(
    v: &V3Vector,
    query: &[(String, String)],
    headers: &[(String, String)],
) -> Result<(), Failed> {
    let (i, e) = (&v.input, &v.expect);
    stage(
        "canonical_query",
        &canonicalized_query(query),
        &e.canonical_query,
    )?;
    let (canonical, signed) = v3::canonical_headers(headers);
    stage("canonical_headers", &canonical, &e.canonical_headers)?;
    stage("signed_headers", &signed, &e.signed_headers)?;
    let request = v3::canonical_request(
        &i.method,
        &e.canonical_query,
        &e.canonical_headers,
        &e.signed_headers,
        &i.payload_sha256,
    );
    stage("canonical_request", &request, &e.canonical_request)?;
    stage(
        "string_to_sign",
        &v3::string_to_sign(&e.canonical_request),
        &e.string_to_sign,
    )?;
    let key = v3::SigningKey::new(&i.secret);
    stage("signature", &key.sign(&e.string_to_sign), &e.signature)?;
    stage(
        "authorization",
        &v3::authorization(&i.access_key_id, &e.signed_headers, &e.signature),
        &e.authorization,
    )?;
    let signed = v3::sign(
        &i.method,
        query,
        headers,
        &i.payload_sha256,
        &i.access_key_id,
        &key,
    );
    stage("signed query", signed.query(), &e.canonical_query)?;
    stage(
        "signed authorization",
        signed.authorization(),
        &e.authorization,
    )
}

fn v3_trial(v: V3Vector) -> Trial {
    Trial::test(format!("v3: {}", v.label), move || {
        let mut query = v.input.query.0.clone();
        let mut headers = v.input.headers.0.clone();
        check_v3(&v, &query, &headers)?;
        query.reverse();
        headers.reverse();
        check_v3(&v, &query, &headers)
            .map_err(|e| format!("with the parameters and headers reversed: {e:?}").into())
    })
}

fn main() {
    let args = Arguments::from_args();
    let mut trials: Vec<Trial> = vectors().into_iter().map(trial).collect();
    trials.extend(v3_vectors().into_iter().map(v3_trial));
    trials.push(Trial::test(
        "the key is the secret followed by an ampersand",
        the_key_is_the_secret_followed_by_an_ampersand,
    ));
    libtest_mimic::run(&args, trials).exit();
}
