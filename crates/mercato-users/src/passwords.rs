//! Password hashing with Argon2id, off the async runtime.
//!
//! The cost is OWASP's Argon2id configuration of 7 MiB and 5 passes (1 lane), one of the five
//! its cheat sheet lists as giving equal defence (19 MiB with 2 passes is another): a hash costs
//! about as much CPU as ~15 orders. Of the five it asks least memory, which is what
//! `mercato up` is short of, and it is also the fastest here: 152 logins/s against 123 with
//! 19 MiB and 2 passes (`mercato bench login`, 2026-12-04), and 46 against 69 MiB of peak RSS.
//! Hashes made with other parameters still verify: a PHC string names its own.
//!
//! Hashes run on a fixed pool of threads as wide as the machine, so a burst of logins queues
//! instead of starving every other request of CPU. A fixed pool, not tokio's blocking pool. Each
//! hashing thread keeps Argon2's working memory between hashes: allocating and freeing it per
//! hash made glibc raise its mmap threshold and fragment the heap, and `mercato up` grew to
//! ~390 MiB under 40 concurrent registrations (then with 19 MiB per hash; 57 MiB with a fixed
//! threshold; now the buffers are the whole cost). Freeing them after a quiet spell was tried
//! (2026-12-04) and is worse: the first free is returned to the system, but it raises glibc's
//! threshold, so the next buffers come from the heap and stay resident when freed; `up` went
//! from 66 to 105 MiB after two bursts of logins, against a steady 66 MiB when kept.

use std::sync::{Arc, Mutex, mpsc};

use anyhow::Context;
use std::cell::RefCell;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretString};

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashingConfig {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashingConfig {
    /// OWASP's Argon2id configuration with the least memory (7 MiB, 5 passes, 1 lane), of the
    /// five it lists as equally strong.
    fn default() -> Self {
        Self { memory_kib: 7_168, iterations: 5, parallelism: 1 }
    }
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct Passwords {
    argon2: Argon2<'static>,
    /// Jobs for the hashing threads; they exit when the last clone is dropped.
    jobs: mpsc::Sender<Job>,
    /// A real hash of a random password: unknown emails are checked against it so that a login
    /// takes as long whether or not the account exists.
    decoy: Arc<String>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords").field("params", self.argon2.params()).finish_non_exhaustive()
    }
}

impl Passwords {
    pub fn new(config: HashingConfig) -> anyhow::Result<Self> {
        let params = Params::new(config.memory_kib, config.iterations, config.parallelism, None)
            .map_err(|error| anyhow::anyhow!("invalid Argon2 parameters: {error}"))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let width = std::thread::available_parallelism().map_or(2, usize::from);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..width {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || {
                    loop {
                        let next = queue.lock().map(|receiver| receiver.recv());
                        match next {
                            Ok(Ok(job)) => job(),
                            _ => return,
                        }
                    }
                })
                .context("starting a password hashing thread")?;
        }
        // The decoy is hashed on a hashing thread too, so that no other thread keeps a buffer.
        let (decoy_sender, decoy_result) = mpsc::channel();
        let decoy_argon2 = argon2.clone();
        let job: Job = Box::new(move || {
            let decoy_password = uuid::Uuid::now_v7().to_string();
            let _ = decoy_sender.send(hash_blocking(&decoy_argon2, decoy_password.as_bytes()));
        });
        jobs.send(job).map_err(|_| anyhow::anyhow!("the password hashing threads stopped"))?;
        let decoy = decoy_result.recv().context("the password hashing threads stopped")??;
        Ok(Self { argon2, jobs, decoy: Arc::new(decoy) })
    }

    /// Runs `work` on a hashing thread and waits for its result without blocking the runtime.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        self.jobs.send(job).map_err(|_| anyhow::anyhow!("password hashing is shut down"))?;
        result.await.context("a password hashing thread failed")?
    }

    pub fn params(&self) -> &Params {
        self.argon2.params()
    }

    /// Hashes a new password (PHC string with salt and parameters).
    pub async fn hash(&self, password: &SecretString) -> anyhow::Result<String> {
        let argon2 = self.argon2.clone();
        let password = password.clone();
        self.run(move || hash_blocking(&argon2, password.expose_secret().as_bytes())).await
    }

    /// Checks `password` against `hash`; with no hash (unknown account) checks against the
    /// decoy and answers `false`, taking the same time.
    pub async fn verify(
        &self,
        password: &SecretString,
        hash: Option<&str>,
    ) -> anyhow::Result<bool> {
        let password = password.clone();
        let known = hash.is_some();
        let hash = hash.map_or_else(|| self.decoy.as_str().to_owned(), str::to_owned);
        let matches =
            self.run(move || verify_blocking(password.expose_secret().as_bytes(), &hash)).await?;
        Ok(known && matches)
    }
}

thread_local! {
    /// Argon2's working memory, kept by each hashing thread from one hash to the next.
    static WORKING_MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs Argon2 on this thread's kept working memory.
fn compute(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    WORKING_MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        let blocks = argon2.params().block_count();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
    })
}

/// A new PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`) for `password`.
fn hash_blocking(argon2: &Argon2<'_>, password: &[u8]) -> anyhow::Result<String> {
    let phc_error =
        |error: argon2::password_hash::Error| anyhow::anyhow!("hashing a password failed: {error}");
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_buffer = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buffer).map_err(phc_error)?;
    let length = argon2.params().output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = Output::init_with(length, |out| Ok(compute(argon2, password, salt_bytes, out)?))
        .map_err(phc_error)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon2.params()).map_err(phc_error)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Checks `password` against a stored PHC string, with the parameters that string names;
/// the comparison is constant-time (`Output`'s equality).
fn verify_blocking(password: &[u8], hash: &str) -> anyhow::Result<bool> {
    let unreadable = |error: argon2::password_hash::Error| {
        anyhow::anyhow!("stored password hash is unreadable: {error}")
    };
    let parsed = PasswordHash::new(hash).map_err(unreadable)?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(unreadable)?;
    let version = match parsed.version {
        Some(version) => Version::try_from(version).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).map_err(unreadable)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        anyhow::bail!("stored password hash has no salt or no hash");
    };
    let mut salt_buffer = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buffer).map_err(unreadable)?;
    let argon2 = Argon2::new(algorithm, version, params);
    let actual =
        Output::init_with(expected.len(), |out| Ok(compute(&argon2, password, salt_bytes, out)?))
            .map_err(unreadable)?;
    Ok(actual == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Passwords {
        Passwords::new(HashingConfig { memory_kib: 1024, iterations: 1, parallelism: 1 })
            .unwrap_or_else(|error| panic!("{error}"))
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_nothing_else() -> anyhow::Result<()> {
        let passwords = cheap();
        let hash = passwords.hash(&SecretString::from("correct horse")).await?;
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        assert!(passwords.verify(&SecretString::from("correct horse"), Some(&hash)).await?);
        assert!(!passwords.verify(&SecretString::from("correct horse!"), Some(&hash)).await?);
        Ok(())
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() -> anyhow::Result<()> {
        let passwords = cheap();
        assert!(!passwords.verify(&SecretString::from("anything"), None).await?);
        Ok(())
    }

    #[test]
    fn hashes_are_standard_phc_strings_that_the_reference_verifier_accepts() -> anyhow::Result<()> {
        use argon2::password_hash::PasswordVerifier;
        let argon2 = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        let hash = hash_blocking(&argon2, b"interoperable")?;
        let parsed = PasswordHash::new(&hash).map_err(|e| anyhow::anyhow!("{e}"))?;
        assert!(Argon2::default().verify_password(b"interoperable", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"other", &parsed).is_err());
        // And the other way round: a hash made by the reference implementation verifies here.
        let salt = SaltString::generate(&mut OsRng);
        let reference =
            argon2::password_hash::PasswordHasher::hash_password(&argon2, b"both ways", &salt)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .to_string();
        assert!(verify_blocking(b"both ways", &reference)?);
        assert!(!verify_blocking(b"not both ways", &reference)?);
        Ok(())
    }

    #[test]
    fn the_default_cost_is_one_of_owasps_argon2id_configurations() {
        let config = HashingConfig::default();
        assert_eq!((config.memory_kib, config.iterations, config.parallelism), (7_168, 5, 1));
    }
}
