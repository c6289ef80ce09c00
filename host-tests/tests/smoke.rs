use host_tests::Vm;
use serde_json::json;

#[test]
fn one_get_becomes_one_event() {
    let mut vm = Vm::envoy()
        .config(json!({"enabled": true}))
        .start()
        .unwrap();
    let out = vm
        .request()
        .path("/v1/things?x=1")
        .key("k1")
        .upstream_ms(12)
        .response_body(5)
        .respond(200)
        .unwrap();
    let ev = vm.events();
    println!(
        "{:#?}\nlogs: {:?}\nfuel {:?} total {}",
        ev,
        vm.logs(),
        out.fuel,
        out.total_fuel()
    );
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["api_path"], "/v1/things");
}
