//! Admin accounts: the one `mercato up` creates on first start, and `users create-admin`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use mercato_store::Database;
use mercato_users::{SigningKeys, UsersService};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

use crate::cli::CreateAdminArgs;
use crate::config::{Overrides, Settings};
use crate::embedded::sqlite_url;

pub const DEFAULT_ADMIN_EMAIL: &str = "admin@mercato.local";
const CREDENTIALS_FILE: &str = "admin-credentials.txt";

/// Credentials generated on first start, to print once.
#[derive(Debug)]
pub struct GeneratedAdmin {
    pub email: String,
    pub password: String,
    pub file: PathBuf,
}

fn generate_password() -> String {
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

/// On the first start of `mercato up` without a configured admin: creates `admin@mercato.local`
/// with a random password and writes it to `<data-dir>/admin-credentials.txt` (mode 0600).
/// Later starts find the account and do nothing.
pub async fn bootstrap_default_admin(
    users: &UsersService,
    data_dir: &Path,
) -> anyhow::Result<Option<GeneratedAdmin>> {
    let file = data_dir.join(CREDENTIALS_FILE);
    if users.account_exists(DEFAULT_ADMIN_EMAIL).await? {
        return Ok(None);
    }
    let password = generate_password();
    // The file first: an account whose password was never shown would be locked for good.
    write_private(&file, &format!("email: {DEFAULT_ADMIN_EMAIL}\npassword: {password}\n"))
        .with_context(|| format!("writing {}", file.display()))?;
    users.ensure_admin(DEFAULT_ADMIN_EMAIL, &SecretString::from(password.clone())).await?;
    Ok(Some(GeneratedAdmin { email: DEFAULT_ADMIN_EMAIL.to_owned(), password, file }))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// `mercato users create-admin`.
pub async fn create_admin(config: Option<&Path>, args: CreateAdminArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        database_url: args.database_url.clone(),
        data_dir: args.data_dir.clone(),
        ..Overrides::default()
    };
    let mut settings = Settings::load(config, overrides)?;
    let (password, generated) = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
        (SecretString::from(line.trim_end_matches(['\r', '\n']).to_owned()), false)
    } else if let Some(password) = settings.admin_password.take() {
        (password, false)
    } else {
        (SecretString::from(generate_password()), true)
    };
    // This command sets exactly the admin it was given, not the configured bootstrap one.
    settings.admin_email = None;
    let url = match &settings.database_url {
        Some(url) => url.clone(),
        None => sqlite_url(&settings.data_dir, "users"),
    };
    let database = Database::connect(&url, &settings.pool())?;
    // The signing key is not used to create an account; an ephemeral one avoids touching files.
    let users =
        UsersService::start(database, SigningKeys::generate(), settings.users_config()?).await?;
    users.ensure_admin(&args.email, &password).await?;
    users.database().close().await;
    println!("{} is an admin.", args.email.trim());
    if generated {
        println!("password: {}", password.expose_secret());
    }
    Ok(())
}
