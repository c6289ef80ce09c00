//! What a usage filter never needs, answered as Envoy does when nothing matches: gRPC calls
//! refused (BAD_ARGUMENT, no gRPC cluster), unknown gRPC tokens, no status, no foreign
//! functions (NOT_FOUND).

use super::guest::{count, C, E};
use crate::abi::status::*;
use crate::state::HostState;
use wasmtime::{Linker, Result};

pub(super) fn add(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        E,
        "proxy_grpc_call",
        |mut c: C,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32|
         -> i32 {
            count(&mut c, "proxy_grpc_call");
            BAD_ARGUMENT
        },
    )?;
    l.func_wrap(
        E,
        "proxy_grpc_stream",
        |mut c: C, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| -> i32 {
            count(&mut c, "proxy_grpc_stream");
            BAD_ARGUMENT
        },
    )?;
    l.func_wrap(
        E,
        "proxy_grpc_send",
        |mut c: C, _: i32, _: i32, _: i32, _: i32| -> i32 {
            count(&mut c, "proxy_grpc_send");
            NOT_FOUND
        },
    )?;
    l.func_wrap(E, "proxy_grpc_cancel", |mut c: C, _: i32| -> i32 {
        count(&mut c, "proxy_grpc_cancel");
        NOT_FOUND
    })?;
    l.func_wrap(E, "proxy_grpc_close", |mut c: C, _: i32| -> i32 {
        count(&mut c, "proxy_grpc_close");
        NOT_FOUND
    })?;
    l.func_wrap(
        E,
        "proxy_get_status",
        |mut c: C, _: i32, _: i32, _: i32| -> i32 {
            count(&mut c, "proxy_get_status");
            NOT_FOUND
        },
    )?;
    l.func_wrap(
        E,
        "proxy_call_foreign_function",
        |mut c: C, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| -> i32 {
            count(&mut c, "proxy_call_foreign_function");
            NOT_FOUND
        },
    )?;
    Ok(())
}
