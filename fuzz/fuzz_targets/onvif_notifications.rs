#![no_main]
//! ONVIF replies come from the network: the SOAP/notification parser and the topic table must
//! return errors, never panic, and never grow without bound.
use doorbell_bridge::onvif::soap::{self, Reply};
use doorbell_bridge::onvif::topics::Table;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Reply::Ok(env)) = soap::parse_reply(data) {
        if let Some(pm) = soap::parse_pull_messages(&env) {
            let mut table = Table::from_config(&doorbell_bridge::config::Config::default().onvif);
            let _ = table.apply(&pm.messages);
            for m in &pm.messages {
                let _ = doorbell_bridge::onvif::topics::entity(m);
            }
        }
        let _ = soap::parse_create_pullpoint(&env);
        let _ = soap::parse_system_date_time(&env);
        let _ = soap::parse_capabilities(&env);
        let _ = doorbell_bridge::onvif::identity::parse_device_information(&env);
    }
});
