//! The project a working directory belongs to, as a namespace: what the
//! hooks and `serve mcp` (which Claude Code starts in the project's
//! directory) use when a call names none.
//!
//! In order: the `namespace` of a `.mnemosyne.toml` in the directory or the
//! nearest parent holding one; else `project:NAME` after the root of the git
//! repository (the nearest parent holding `.git`, a directory or a
//! worktree's file); else `global`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use mnemosyne_core::{NAMESPACE_PART_BYTES_MAX, Namespace};
use serde::{Deserialize, Serialize};

/// The file that names the project of a directory tree.
pub const PROJECT_FILE: &str = ".mnemosyne.toml";
/// Directories searched: the working directory and at most this many parents.
pub const PARENTS_MAX: usize = 64;
/// A project file longer than this is refused (it holds one line).
pub const PROJECT_FILE_BYTES_MAX: u64 = 16 * 1024;

/// Where the detected namespace came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Source {
    /// A `.mnemosyne.toml`.
    File { path: PathBuf },
    /// The name of a git repository's root directory.
    GitRoot { path: PathBuf },
    /// Neither was found.
    Default,
}

/// A working directory's project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Project {
    pub namespace: Namespace,
    #[serde(flatten)]
    pub source: Source,
}

impl Project {
    /// Why this namespace, in words: the file or repository it came from.
    pub fn reason(&self) -> String {
        match &self.source {
            Source::File { path } => format!("from {}", path.display()),
            Source::GitRoot { path } => format!("the git repository at {}", path.display()),
            Source::Default => format!("no {PROJECT_FILE} and no git repository here or above"),
        }
    }
}

/// What `.mnemosyne.toml` holds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectFile {
    namespace: String,
}

/// The project of `cwd`; an unreadable or malformed project file is an
/// error naming it (a wrong namespace would file memories away silently).
pub fn detect(cwd: &Path) -> Result<Project> {
    let searched = || cwd.ancestors().take(PARENTS_MAX + 1);
    if let Some(path) = searched()
        .map(|dir| dir.join(PROJECT_FILE))
        .find(|path| path.is_file())
    {
        let namespace = read_project_file(&path)?;
        return Ok(Project {
            namespace,
            source: Source::File { path },
        });
    }
    if let Some(root) = searched().find(|dir| dir.join(".git").exists()) {
        return Ok(Project {
            namespace: namespace_of_directory(root),
            source: Source::GitRoot {
                path: root.to_owned(),
            },
        });
    }
    Ok(Project {
        namespace: Namespace::Global,
        source: Source::Default,
    })
}

fn read_project_file(path: &Path) -> Result<Namespace> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut text = String::new();
    file.take(PROJECT_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {} (is it UTF-8 text?)", path.display()))?;
    if text.len() as u64 > PROJECT_FILE_BYTES_MAX {
        bail!(
            "{} is over {PROJECT_FILE_BYTES_MAX} bytes; it holds one line: namespace = \"project:NAME\"",
            path.display()
        );
    }
    let parsed: ProjectFile = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: {}; expected one line: namespace = \"project:NAME\"",
            path.display(),
            e.message().replace('\n', " ")
        )
    })?;
    let namespace: Namespace = parsed
        .namespace
        .parse()
        .with_context(|| format!("{}: namespace", path.display()))?;
    if matches!(namespace, Namespace::Session { .. }) {
        bail!(
            "{}: namespace {namespace} is a session; a project file names global or project:NAME",
            path.display()
        );
    }
    Ok(namespace)
}

/// `project:NAME` after the directory's name: characters a namespace does
/// not take become `-`, and the name is cut to its longest; `global` when
/// nothing is left (a root directory).
fn namespace_of_directory(dir: &Path) -> Namespace {
    let Some(name) = dir.file_name() else {
        return Namespace::Global;
    };
    let name: String = name
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(NAMESPACE_PART_BYTES_MAX)
        .collect();
    if name.is_empty() {
        return Namespace::Global;
    }
    Namespace::Project(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("project-detect")
            .tempdir()
            .expect("a temp dir")
    }

    fn project(name: &str) -> Namespace {
        Namespace::Project(name.into())
    }

    #[test]
    fn the_git_root_names_the_project_from_any_directory_below_it() {
        let t = tree();
        let root = t.path().join("atlas");
        let deep = root.join("src/storage/sqlite");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::create_dir(root.join(".git")).unwrap();
        for cwd in [&root, &deep] {
            let found = detect(cwd).unwrap();
            assert_eq!(found.namespace, project("atlas"));
            assert_eq!(found.source, Source::GitRoot { path: root.clone() });
        }
    }

    #[test]
    fn a_worktree_git_file_counts_and_the_nearest_root_wins() {
        let t = tree();
        let outer = t.path().join("outer");
        let inner = outer.join("vendor/inner");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::create_dir(outer.join(".git")).unwrap();
        std::fs::write(inner.join(".git"), "gitdir: ../../.git/worktrees/inner\n").unwrap();
        assert_eq!(detect(&inner).unwrap().namespace, project("inner"));
    }

    #[test]
    fn a_project_file_in_a_parent_wins_over_a_git_root_below_it() {
        let t = tree();
        let repo = t.path().join("work/repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        let file = t.path().join("work").join(PROJECT_FILE);
        std::fs::write(&file, "namespace = \"project:team-x\"\n").unwrap();
        let found = detect(&repo).unwrap();
        assert_eq!(found.namespace, project("team-x"));
        assert_eq!(found.source, Source::File { path: file });
        std::fs::write(
            t.path().join("work").join(PROJECT_FILE),
            "namespace = \"global\"",
        )
        .unwrap();
        assert_eq!(detect(&repo).unwrap().namespace, Namespace::Global);
    }

    #[test]
    fn no_file_and_no_repository_is_global() {
        let t = tree();
        let found = detect(t.path()).unwrap();
        assert_eq!(found.namespace, Namespace::Global);
        assert_eq!(found.source, Source::Default);
    }

    #[test]
    fn directory_names_become_valid_bounded_project_names() {
        let t = tree();
        for (dir, expected) in [
            ("my repo (1)", "my-repo--1-"),
            ("über.rs", "-ber.rs"),
            (
                &"x".repeat(200) as &str,
                &"x".repeat(NAMESPACE_PART_BYTES_MAX) as &str,
            ),
        ] {
            let root = t.path().join(dir);
            std::fs::create_dir_all(root.join(".git")).unwrap();
            let found = detect(&root).unwrap().namespace;
            assert_eq!(found, project(expected), "{dir}");
            assert_eq!(found.to_string().parse::<Namespace>().unwrap(), found);
        }
    }

    #[test]
    fn a_bad_project_file_is_one_line_naming_it() {
        let t = tree();
        let file = t.path().join(PROJECT_FILE);
        for (text, says) in [
            ("namespace = ", "expected one line"),
            ("name = \"project:x\"", "expected one line"),
            ("namespace = \"project:a b\"", "malformed namespace"),
            ("namespace = \"session:p/1\"", "is a session"),
        ] {
            std::fs::write(&file, text).unwrap();
            let message = format!("{:#}", detect(t.path()).unwrap_err());
            assert!(message.contains(PROJECT_FILE), "{text}: {message}");
            assert!(message.contains(says), "{text}: {message}");
            assert!(!message.contains('\n'), "{text}: {message}");
        }
        std::fs::write(&file, vec![b'#'; PROJECT_FILE_BYTES_MAX as usize + 1]).unwrap();
        let message = format!("{:#}", detect(t.path()).unwrap_err());
        assert!(message.contains("is over"), "{message}");
        std::fs::write(&file, [0xff, 0xfe, b'\n']).unwrap();
        let message = format!("{:#}", detect(t.path()).unwrap_err());
        assert!(message.contains("UTF-8"), "{message}");
    }
}
