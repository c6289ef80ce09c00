//! The WASI preview 1 subset a proxy-wasm filter imports, with the clock and entropy under the
//! host's control, plus `ENOSYS` for anything else a module imports from WASI (enough for a
//! libtest binary: see `bin/wasi-test-runner.rs`).

use wasmtime::Result;
use wasmtime::{Caller, Extern, Linker, Memory, Module, Val};

pub const ERRNO_SUCCESS: i32 = 0;
pub const ERRNO_BADF: i32 = 8;
pub const ERRNO_INVAL: i32 = 28;
pub const ERRNO_NOSYS: i32 = 52;

/// What the WASI functions need from a host's state.
pub trait WasiView {
    fn wasi(&mut self) -> &mut WasiState;
}

#[derive(Debug, Default)]
pub struct WasiState {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Realtime clock, ns since the epoch.
    pub realtime_ns: u64,
    pub monotonic_ns: u64,
    /// What was written to fd 1 and 2.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Pass writes on to the real stdout/stderr (the test runner).
    pub passthrough: bool,
    pub rng_state: u64,
    pub exit_code: Option<i32>,
    /// Scripted entropy, see `ScriptedRandom`.
    pub scripted: ScriptedRandom,
}

/// Bytes `random_get` answers from before its generator (one stream's, set by
/// `Stream::random_bytes`), and what was drawn meanwhile. A call is answered from the
/// script only when the script still holds all the bytes it asks for, so a filter refilling
/// a large pool in the same callback does not eat the stream's bytes.
#[derive(Debug, Default, Clone)]
pub struct ScriptedRandom {
    pub bytes: Vec<u8>,
    pub used: usize,
    /// Bytes drawn by `random_get` (script and generator) since the script was set.
    pub drawn: usize,
}

impl ScriptedRandom {
    pub fn set(&mut self, bytes: Vec<u8>) {
        *self = ScriptedRandom {
            bytes,
            ..Default::default()
        };
    }

    /// The next `len` scripted bytes, when the script holds that many.
    fn take(&mut self, len: usize) -> Option<&[u8]> {
        self.drawn += len;
        if self.bytes.len() - self.used < len {
            return None;
        }
        self.used += len;
        Some(&self.bytes[self.used - len..self.used])
    }
}

/// `proc_exit` unwinds out of the guest with this error.
#[derive(Debug)]
pub struct Exit(pub i32);
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "wasi proc_exit({})", self.0)
    }
}
impl std::error::Error for Exit {}

fn memory<T>(caller: &mut Caller<'_, T>) -> Option<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

fn write_bytes<T>(caller: &mut Caller<'_, T>, ptr: i32, data: &[u8]) -> bool {
    match memory(caller) {
        Some(m) => m.write(caller, ptr as u32 as usize, data).is_ok(),
        None => false,
    }
}

fn read_bytes<T>(caller: &mut Caller<'_, T>, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let m = memory(caller)?;
    let mut buf = vec![0u8; len as u32 as usize];
    m.read(&*caller, ptr as u32 as usize, &mut buf).ok()?;
    Some(buf)
}

fn strings_sizes(items: &[String]) -> (i32, i32) {
    (
        items.len() as i32,
        items.iter().map(|s| s.len() as i32 + 1).sum(),
    )
}

fn write_strings<T>(caller: &mut Caller<'_, T>, items: &[String], ptrs: i32, buf: i32) -> i32 {
    let mut at = buf;
    for (i, s) in items.iter().enumerate() {
        let mut z = s.as_bytes().to_vec();
        z.push(0);
        if !write_bytes(caller, ptrs + (i as i32) * 4, &(at as u32).to_le_bytes())
            || !write_bytes(caller, at, &z)
        {
            return ERRNO_INVAL;
        }
        at += z.len() as i32;
    }
    ERRNO_SUCCESS
}

const IMPLEMENTED: &[&str] = &[
    "random_get",
    "environ_get",
    "environ_sizes_get",
    "args_get",
    "args_sizes_get",
    "clock_time_get",
    "fd_write",
    "proc_exit",
    "fd_prestat_get",
    "sched_yield",
];

pub fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>, module: &Module) -> Result<()> {
    const M: &str = "wasi_snapshot_preview1";
    linker.func_wrap(
        M,
        "random_get",
        |mut c: Caller<'_, T>, ptr: i32, len: i32| -> i32 {
            let st = c.data_mut().wasi();
            if let Some(b) = st.scripted.take(len as u32 as usize) {
                let b = b.to_vec();
                return if write_bytes(&mut c, ptr, &b) {
                    ERRNO_SUCCESS
                } else {
                    ERRNO_INVAL
                };
            }
            // splitmix64: deterministic per run is fine; ids only need to differ.
            let mut out = Vec::with_capacity(len as usize);
            while out.len() < len as usize {
                st.rng_state = st.rng_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = st.rng_state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                out.extend_from_slice(&z.to_le_bytes());
            }
            out.truncate(len as usize);
            if write_bytes(&mut c, ptr, &out) {
                ERRNO_SUCCESS
            } else {
                ERRNO_INVAL
            }
        },
    )?;
    linker.func_wrap(
        M,
        "environ_sizes_get",
        |mut c: Caller<'_, T>, count: i32, size: i32| -> i32 {
            let env: Vec<String> = c
                .data_mut()
                .wasi()
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let (n, s) = strings_sizes(&env);
            if write_bytes(&mut c, count, &n.to_le_bytes())
                && write_bytes(&mut c, size, &s.to_le_bytes())
            {
                ERRNO_SUCCESS
            } else {
                ERRNO_INVAL
            }
        },
    )?;
    linker.func_wrap(
        M,
        "environ_get",
        |mut c: Caller<'_, T>, ptrs: i32, buf: i32| -> i32 {
            let env: Vec<String> = c
                .data_mut()
                .wasi()
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            write_strings(&mut c, &env, ptrs, buf)
        },
    )?;
    linker.func_wrap(
        M,
        "args_sizes_get",
        |mut c: Caller<'_, T>, count: i32, size: i32| -> i32 {
            let args = c.data_mut().wasi().args.clone();
            let (n, s) = strings_sizes(&args);
            if write_bytes(&mut c, count, &n.to_le_bytes())
                && write_bytes(&mut c, size, &s.to_le_bytes())
            {
                ERRNO_SUCCESS
            } else {
                ERRNO_INVAL
            }
        },
    )?;
    linker.func_wrap(
        M,
        "args_get",
        |mut c: Caller<'_, T>, ptrs: i32, buf: i32| -> i32 {
            let args = c.data_mut().wasi().args.clone();
            write_strings(&mut c, &args, ptrs, buf)
        },
    )?;
    linker.func_wrap(
        M,
        "clock_time_get",
        |mut c: Caller<'_, T>, id: i32, _precision: i64, out: i32| -> i32 {
            let st = c.data_mut().wasi();
            let t = match id {
                0 => st.realtime_ns,
                1..=3 => st.monotonic_ns,
                _ => return ERRNO_INVAL,
            };
            if write_bytes(&mut c, out, &t.to_le_bytes()) {
                ERRNO_SUCCESS
            } else {
                ERRNO_INVAL
            }
        },
    )?;
    linker.func_wrap(
        M,
        "fd_write",
        |mut c: Caller<'_, T>, fd: i32, iovs: i32, n: i32, written: i32| -> i32 {
            let mut data = Vec::new();
            for i in 0..n {
                let Some(iov) = read_bytes(&mut c, iovs + i * 8, 8) else {
                    return ERRNO_INVAL;
                };
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                let Some(chunk) = read_bytes(&mut c, ptr, len) else {
                    return ERRNO_INVAL;
                };
                data.extend_from_slice(&chunk);
            }
            let st = c.data_mut().wasi();
            match fd {
                1 => {
                    if st.passthrough {
                        use std::io::Write;
                        let _ = std::io::stdout().write_all(&data);
                    }
                    st.stdout.extend_from_slice(&data)
                }
                2 => {
                    if st.passthrough {
                        use std::io::Write;
                        let _ = std::io::stderr().write_all(&data);
                    }
                    st.stderr.extend_from_slice(&data)
                }
                _ => return ERRNO_BADF,
            }
            if write_bytes(&mut c, written, &(data.len() as u32).to_le_bytes()) {
                ERRNO_SUCCESS
            } else {
                ERRNO_INVAL
            }
        },
    )?;
    linker.func_wrap(
        M,
        "proc_exit",
        |mut c: Caller<'_, T>, code: i32| -> Result<()> {
            c.data_mut().wasi().exit_code = Some(code);
            Err(Exit(code).into())
        },
    )?;
    // No preopened directories.
    linker.func_wrap(
        M,
        "fd_prestat_get",
        |_: Caller<'_, T>, _fd: i32, _out: i32| -> i32 { ERRNO_BADF },
    )?;
    linker.func_wrap(M, "sched_yield", |_: Caller<'_, T>| -> i32 {
        ERRNO_SUCCESS
    })?;
    for import in module.imports() {
        if import.module() != M || IMPLEMENTED.contains(&import.name()) {
            continue;
        }
        if let wasmtime::ExternType::Func(ty) = import.ty() {
            let results = ty.results().len();
            linker.func_new(M, import.name(), ty, move |_, _, out: &mut [Val]| {
                if results == 1 {
                    out[0] = Val::I32(ERRNO_NOSYS);
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}
