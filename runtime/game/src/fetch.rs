//! Downloading and unpacking third-party source archives without running any of their
//! code: PyPI sdists (the URL and sha256 from PyPI's JSON API) and crates.io `.crate`
//! files (the checksum from `Cargo.lock` or the crates.io index). Every download is
//! checked against its sha256 before it is read; unpacking is done here, in Rust, and
//! refuses members that would land outside the destination (absolute paths, `..`,
//! links pointing out of the tree, hard links, devices).
//!
//! Why not `pip download --no-binary :all:`: pip prepares an sdist's metadata by
//! running the package's build backend, that is the package's own code, on the host.
//!
//! Does not own: turning releases into a git history (`examples`), or what the game
//! does with the tree.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// PyPI's JSON API and crates.io's download and index hosts.
pub const PYPI: &str = "https://pypi.org";
pub const CRATES_DOWNLOAD: &str = "https://static.crates.io/crates";
pub const CRATES_INDEX: &str = "https://index.crates.io";

/// Why an archive could not be fetched or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("`{0}` is not a plain package name or version (letters, digits, `._-+`)")]
    BadName(String),
    #[error("GET {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("GET {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{package} {version} has no sdist on PyPI (only wheels); pick a release with an sdist")]
    NoSdist { package: String, version: String },
    #[error("{what}: sha256 is {actual}, expected {expected}")]
    Checksum {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{what}: {reason}")]
    BadMetadata { what: String, reason: String },
    #[error("archive member `{member}` refused: {reason}")]
    Unsafe { member: String, reason: String },
    #[error("reading the archive {name}: {reason}")]
    Archive { name: String, reason: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError {
    let path = path.to_path_buf();
    move |source| FetchError::Io { path, source }
}

/// A plain package name or version: what may go into a URL path unescaped.
fn check_name(s: &str) -> Result<&str, FetchError> {
    let ok = !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c));
    if ok {
        Ok(s)
    } else {
        Err(FetchError::BadName(s.to_string()))
    }
}

/// An HTTP client with the timeouts every fetch here uses.
pub fn client() -> Result<reqwest::blocking::Client, FetchError> {
    let mut builder = reqwest::blocking::Client::builder();
    // The built-in web roots, plus the system's bundle: behind an inspecting egress
    // proxy (CI machines, company networks) only the system store holds its CA.
    let bundle = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    if let Ok(pem) = std::fs::read(&bundle)
        && let Ok(certs) = reqwest::Certificate::from_pem_bundle(&pem)
    {
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    builder
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(300))
        .user_agent(concat!("ssr/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Http {
            url: String::new(),
            reason: e.to_string(),
        })
}

fn get(client: &reqwest::blocking::Client, url: &str) -> Result<Vec<u8>, FetchError> {
    let http = |e: reqwest::Error| FetchError::Http {
        url: url.to_string(),
        reason: e.to_string(),
    };
    let resp = client.get(url).send().map_err(http)?;
    if !resp.status().is_success() {
        return Err(FetchError::Status {
            url: url.to_string(),
            status: resp.status().as_u16(),
        });
    }
    Ok(resp.bytes().map_err(http)?.to_vec())
}

/// The hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Downloads `url` and checks its sha256 against `expected` (hex, any case).
pub fn download_checked(
    client: &reqwest::blocking::Client,
    url: &str,
    expected: &str,
) -> Result<Vec<u8>, FetchError> {
    let bytes = get(client, url)?;
    let actual = sha256_hex(&bytes);
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(FetchError::Checksum {
            what: url.to_string(),
            expected: expected.to_lowercase(),
            actual,
        });
    }
    Ok(bytes)
}

/// One sdist of a release, as PyPI's JSON API lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sdist {
    pub filename: String,
    pub url: String,
    pub sha256: String,
}

/// Reads the sdist entry of `version` out of a `/pypi/<package>/json` document (its
/// `releases` map) or a `/pypi/<package>/<version>/json` one (its `urls` list). A
/// relative file URL (as index mirrors write them) is resolved against `base`.
pub fn sdist_of_release(
    json: &[u8],
    base: &str,
    package: &str,
    version: &str,
) -> Result<Sdist, FetchError> {
    let bad = |reason: &str| FetchError::BadMetadata {
        what: format!("PyPI metadata of {package} {version}"),
        reason: reason.to_string(),
    };
    let doc: serde_json::Value = serde_json::from_slice(json).map_err(|e| bad(&e.to_string()))?;
    let urls = match doc["releases"].as_object() {
        Some(releases) => releases
            .get(version)
            .and_then(|r| r.as_array())
            .ok_or_else(|| bad(&format!("PyPI lists no release {version}")))?,
        None => doc["urls"]
            .as_array()
            .ok_or_else(|| bad("no `urls` list"))?,
    };
    let sdist = urls
        .iter()
        .find(|u| u["packagetype"] == "sdist")
        .ok_or_else(|| FetchError::NoSdist {
            package: package.to_string(),
            version: version.to_string(),
        })?;
    let field = |k: &str| {
        sdist[k]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| bad(&format!("the sdist entry has no `{k}`")))
    };
    let sha256 = sdist["digests"]["sha256"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| bad("the sdist entry has no sha256 digest"))?;
    let url = field("url")?;
    let url = reqwest::Url::parse(base)
        .and_then(|b| b.join(&url))
        .map_err(|e| bad(&format!("the sdist URL `{url}`: {e}")))?
        .to_string();
    Ok(Sdist {
        filename: field("filename")?,
        url,
        sha256,
    })
}

/// Looks up the sdist of `package` `version` on PyPI.
pub fn pypi_sdist(
    client: &reqwest::blocking::Client,
    package: &str,
    version: &str,
) -> Result<Sdist, FetchError> {
    // The project document, not `/pypi/<p>/<v>/json`: both hold the release's files
    // on PyPI, and only the project document is served by every mirror we met.
    check_name(version)?;
    let url = format!("{PYPI}/pypi/{}/json", check_name(package)?);
    sdist_of_release(&get(client, &url)?, &url, package, version)
}

/// Fetches the sdist of `package` `version` and unpacks it into `dest` (created; the
/// archive's single top-level directory is stripped). With `pinned`, the sha256 must
/// also equal it (a pinned corpus must not drift if a file is replaced on PyPI).
/// Returns the sdist's sha256.
pub fn fetch_sdist(
    client: &reqwest::blocking::Client,
    package: &str,
    version: &str,
    pinned: Option<&str>,
    dest: &Path,
) -> Result<String, FetchError> {
    let sdist = pypi_sdist(client, package, version)?;
    if let Some(pin) = pinned
        && !pin.eq_ignore_ascii_case(&sdist.sha256)
    {
        return Err(FetchError::Checksum {
            what: format!("{} (PyPI's digest against the pin)", sdist.filename),
            expected: pin.to_lowercase(),
            actual: sdist.sha256,
        });
    }
    let bytes = download_checked(client, &sdist.url, &sdist.sha256)?;
    unpack(&sdist.filename, &bytes, dest)?;
    Ok(sdist.sha256)
}

/// The checksum of crate `name` `version` from the crates.io sparse index.
pub fn crate_checksum_from_index(
    client: &reqwest::blocking::Client,
    name: &str,
    version: &str,
) -> Result<String, FetchError> {
    let name = check_name(name)?.to_lowercase();
    let prefix = match name.len() {
        1 => "1".to_string(),
        2 => "2".to_string(),
        3 => format!("3/{}", &name[..1]),
        _ => format!("{}/{}", &name[..2], &name[2..4]),
    };
    let url = format!("{CRATES_INDEX}/{prefix}/{name}");
    let text = String::from_utf8_lossy(&get(client, &url)?).into_owned();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["vers"] == version
            && let Some(c) = v["cksum"].as_str()
        {
            return Ok(c.to_string());
        }
    }
    Err(FetchError::BadMetadata {
        what: url,
        reason: format!("no version {version} in the index"),
    })
}

/// Fetches the `.crate` of `name` `version` (checked against `sha256`, from
/// `Cargo.lock`; `None` asks the index) and returns its bytes.
pub fn fetch_crate_bytes(
    client: &reqwest::blocking::Client,
    name: &str,
    version: &str,
    sha256: Option<&str>,
) -> Result<Vec<u8>, FetchError> {
    let (name, version) = (check_name(name)?, check_name(version)?);
    let sum = match sha256 {
        Some(s) => s.to_string(),
        None => crate_checksum_from_index(client, name, version)?,
    };
    let url = format!("{CRATES_DOWNLOAD}/{name}/{name}-{version}.crate");
    download_checked(client, &url, &sum)
}

/// Fetches and unpacks a crate's source into `dest` (the `name-version/` top level
/// stripped). Returns the checksum used.
pub fn fetch_crate(
    client: &reqwest::blocking::Client,
    name: &str,
    version: &str,
    sha256: Option<&str>,
    dest: &Path,
) -> Result<String, FetchError> {
    let bytes = fetch_crate_bytes(client, name, version, sha256)?;
    unpack(&format!("{name}-{version}.crate"), &bytes, dest)?;
    Ok(sha256_hex(&bytes))
}

/// A member path made safe: relative, no `..`, no root or prefix; the first component
/// (the archive's top-level directory) is stripped when `strip_top`.
fn safe_relative(member: &str, strip_top: bool) -> Result<Option<PathBuf>, FetchError> {
    let refuse = |reason: &str| FetchError::Unsafe {
        member: member.to_string(),
        reason: reason.to_string(),
    };
    let mut out = PathBuf::new();
    let mut first = true;
    for c in Path::new(member).components() {
        match c {
            Component::Normal(p) => {
                if first && strip_top {
                    first = false;
                    continue;
                }
                first = false;
                out.push(p);
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse("a `..` component")),
            Component::RootDir | Component::Prefix(_) => return Err(refuse("an absolute path")),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Whether a symlink at `rel` (relative to the tree) pointing to `target` stays inside
/// the tree.
fn link_stays_inside(rel: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = rel.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// The single top-level directory all members share, if any (sdists and crates have
/// one: `<name>-<version>/`).
fn common_top<'a>(names: impl Iterator<Item = &'a str>) -> bool {
    let mut top: Option<String> = None;
    let mut nested = false;
    for n in names {
        let mut parts = n.trim_start_matches("./").splitn(2, '/');
        let head = parts.next().unwrap_or("").to_string();
        nested |= parts.next().is_some_and(|r| !r.is_empty());
        match &top {
            None => top = Some(head),
            Some(t) if *t == head => {}
            Some(_) => return false,
        }
    }
    top.is_some() && nested
}

fn write_file(dest: &Path, rel: &Path, data: &[u8], mode: Option<u32>) -> Result<(), FetchError> {
    let path = dest.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    // A member listed twice, or a link made earlier at this path: replace, never
    // write through it.
    if path.symlink_metadata().is_ok() {
        std::fs::remove_file(&path).map_err(io(&path))?;
    }
    std::fs::write(&path, data).map_err(io(&path))?;
    if let Some(m) = mode {
        use std::os::unix::fs::PermissionsExt;
        // Keep only the execute bits' meaning: 0o755 or 0o644.
        let m = if m & 0o111 != 0 { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).map_err(io(&path))?;
    }
    Ok(())
}

/// Unpacks a `.tar.gz`/`.tgz`/`.crate`/`.tar` or `.zip` archive (by `name`) into
/// `dest`, stripping the archive's one top-level directory when it has one.
pub fn unpack(name: &str, bytes: &[u8], dest: &Path) -> Result<(), FetchError> {
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    let archive_err = |e: &dyn std::fmt::Display| FetchError::Archive {
        name: name.to_string(),
        reason: e.to_string(),
    };
    if name.ends_with(".zip") {
        return unpack_zip(name, bytes, dest);
    }
    let tar_bytes = if name.ends_with(".tar") {
        bytes.to_vec()
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") || name.ends_with(".crate") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| archive_err(&e))?;
        out
    } else {
        return Err(archive_err(
            &"unknown archive type (want .tar.gz, .tgz, .tar, .zip or .crate)",
        ));
    };
    // First pass: member names, to decide whether to strip a top-level directory.
    let mut names = Vec::new();
    for entry in tar::Archive::new(&tar_bytes[..])
        .entries()
        .map_err(|e| archive_err(&e))?
    {
        let entry = entry.map_err(|e| archive_err(&e))?;
        let path = entry.path().map_err(|e| archive_err(&e))?;
        names.push(path.to_string_lossy().into_owned());
    }
    let strip = common_top(names.iter().map(String::as_str));
    for entry in tar::Archive::new(&tar_bytes[..])
        .entries()
        .map_err(|e| archive_err(&e))?
    {
        let mut entry = entry.map_err(|e| archive_err(&e))?;
        let member = entry
            .path()
            .map_err(|e| archive_err(&e))?
            .to_string_lossy()
            .into_owned();
        let Some(rel) = safe_relative(&member, strip)? else {
            continue;
        };
        let kind = entry.header().entry_type();
        use tar::EntryType as E;
        match kind {
            E::Directory => {
                let d = dest.join(&rel);
                std::fs::create_dir_all(&d).map_err(io(&d))?;
            }
            E::Regular | E::Continuous => {
                let mode = entry.header().mode().ok();
                let mut data = Vec::new();
                entry.read_to_end(&mut data).map_err(|e| archive_err(&e))?;
                write_file(dest, &rel, &data, mode)?;
            }
            E::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| archive_err(&e))?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if !link_stays_inside(&rel, &target) {
                    return Err(FetchError::Unsafe {
                        member,
                        reason: format!("a link to {} points out of the tree", target.display()),
                    });
                }
                let path = dest.join(&rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent))?;
                }
                if path.symlink_metadata().is_ok() {
                    std::fs::remove_file(&path).map_err(io(&path))?;
                }
                std::os::unix::fs::symlink(&target, &path).map_err(io(&path))?;
            }
            // pax/GNU headers are metadata the reader already applied.
            E::XHeader | E::XGlobalHeader | E::GNULongName | E::GNULongLink => {}
            other => {
                return Err(FetchError::Unsafe {
                    member,
                    reason: format!(
                        "entry type {other:?} (hard link, device or fifo) is not unpacked"
                    ),
                });
            }
        }
    }
    Ok(())
}

fn unpack_zip(name: &str, bytes: &[u8], dest: &Path) -> Result<(), FetchError> {
    let archive_err = |e: &dyn std::fmt::Display| FetchError::Archive {
        name: name.to_string(),
        reason: e.to_string(),
    };
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| archive_err(&e))?;
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let strip = common_top(names.iter().map(String::as_str));
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).map_err(|e| archive_err(&e))?;
        let member = file.name().to_string();
        let Some(rel) = safe_relative(&member, strip)? else {
            continue;
        };
        if file.is_symlink() {
            // Zip sdists have no business holding links; refusing is simpler than
            // checking where one points.
            return Err(FetchError::Unsafe {
                member,
                reason: "a symbolic link in a zip archive".into(),
            });
        }
        if file.is_dir() {
            let d = dest.join(&rel);
            std::fs::create_dir_all(&d).map_err(io(&d))?;
            continue;
        }
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(|e| archive_err(&e))?;
        write_file(dest, &rel, &data, file.unix_mode())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(members: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in members {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // `set_path` refuses `..`; write the raw name as a hostile archive would.
            let name = h.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    use tar::EntryType as E;

    #[test]
    fn an_sdist_is_unpacked_with_its_top_directory_stripped() {
        let gz = tar_gz(&[
            ("pkg-1.0/setup.py", E::Regular, b"print(1)\n", None),
            ("pkg-1.0/pkg/__init__.py", E::Regular, b"X = 1\n", None),
            ("pkg-1.0/pkg/alias.py", E::Symlink, b"", Some("__init__.py")),
        ]);
        let d = tempfile::tempdir().unwrap();
        unpack("pkg-1.0.tar.gz", &gz, d.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("pkg/__init__.py")).unwrap(),
            "X = 1\n"
        );
        assert_eq!(
            std::fs::read_link(d.path().join("pkg/alias.py")).unwrap(),
            Path::new("__init__.py")
        );
    }

    #[test]
    fn traversal_absolute_paths_and_links_out_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        for (member, kind, link) in [
            ("pkg-1.0/../../evil", E::Regular, None),
            ("/etc/evil", E::Regular, None),
            ("pkg-1.0/up", E::Symlink, Some("../../etc/passwd")),
            ("pkg-1.0/abs", E::Symlink, Some("/etc/passwd")),
            ("pkg-1.0/hard", E::Link, Some("/etc/passwd")),
        ] {
            let gz = tar_gz(&[
                ("pkg-1.0/ok.py", E::Regular, b"1\n", None),
                (member, kind, b"", link),
            ]);
            match unpack("pkg-1.0.tar.gz", &gz, &out) {
                Err(FetchError::Unsafe { .. }) => {}
                other => panic!("{member}: expected Unsafe, got {other:?}"),
            }
        }
        assert!(!d.path().join("evil").exists());
    }

    #[test]
    fn a_zip_sdist_is_unpacked_and_its_traversal_refused() {
        use std::io::Write;
        let zip_of = |names: &[&str]| {
            let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            for n in names {
                w.start_file(*n, zip::write::SimpleFileOptions::default())
                    .unwrap();
                w.write_all(b"x = 1\n").unwrap();
            }
            w.finish().unwrap().into_inner()
        };
        let d = tempfile::tempdir().unwrap();
        unpack(
            "p-1.zip",
            &zip_of(&["p-1/p.py", "p-1/t/test_p.py"]),
            d.path(),
        )
        .unwrap();
        assert!(d.path().join("t/test_p.py").is_file());
        let bad = zip_of(&["p-1/p.py", "p-1/../../x.py"]);
        assert!(matches!(
            unpack("p-1.zip", &bad, &d.path().join("o")),
            Err(FetchError::Unsafe { .. })
        ));
    }

    #[test]
    fn pypi_metadata_gives_the_sdist_or_a_typed_error() {
        let doc = br#"{"urls": [
            {"packagetype": "bdist_wheel", "filename": "p-1-py3-none-any.whl", "url": "https://x/w", "digests": {"sha256": "aa"}},
            {"packagetype": "sdist", "filename": "p-1.tar.gz", "url": "https://x/s", "digests": {"sha256": "bb"}}
        ]}"#;
        let base = "https://pypi.org/pypi/p/json";
        assert_eq!(
            sdist_of_release(doc, base, "p", "1").unwrap(),
            Sdist {
                filename: "p-1.tar.gz".into(),
                url: "https://x/s".into(),
                sha256: "bb".into()
            }
        );
        // The project document: the release's files, a relative URL resolved.
        let project = br#"{"urls": [], "releases": {"1": [
            {"packagetype": "sdist", "filename": "p-1.tar.gz", "url": "../../packages/ab/p-1.tar.gz", "digests": {"sha256": "cc"}}
        ]}}"#;
        let s = sdist_of_release(project, base, "p", "1").unwrap();
        assert_eq!(s.url, "https://pypi.org/packages/ab/p-1.tar.gz");
        assert!(matches!(
            sdist_of_release(project, base, "p", "2"),
            Err(FetchError::BadMetadata { .. })
        ));
        let wheels_only = br#"{"urls": [{"packagetype": "bdist_wheel", "filename": "w", "url": "u", "digests": {"sha256": "aa"}}]}"#;
        assert!(matches!(
            sdist_of_release(wheels_only, base, "p", "1"),
            Err(FetchError::NoSdist { .. })
        ));
        assert!(matches!(
            sdist_of_release(b"not json", base, "p", "1"),
            Err(FetchError::BadMetadata { .. })
        ));
        assert!(matches!(check_name("../x"), Err(FetchError::BadName(_))));
        assert!(matches!(check_name("a/b"), Err(FetchError::BadName(_))));
    }

    #[test]
    fn links_inside_the_tree_are_told_from_links_out() {
        assert!(link_stays_inside(Path::new("a/b"), Path::new("c")));
        assert!(link_stays_inside(Path::new("a/b"), Path::new("../c")));
        assert!(!link_stays_inside(Path::new("a/b"), Path::new("../../c")));
        assert!(!link_stays_inside(Path::new("b"), Path::new("/etc")));
    }
}
