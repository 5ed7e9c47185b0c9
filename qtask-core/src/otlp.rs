//! OTLP export of this process's spans (feature `otlp`): `Config::otlp_endpoint` (or
//! `QTASK_OTLP_ENDPOINT`) names a collector; the first client opened with it installs
//! the process's tracing subscriber (logs.rs) with a `tracing-opentelemetry` layer over
//! an OpenTelemetry SDK tracer provider that sends batches over OTLP/HTTP (protobuf).
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` name the process, as usual.
//! A Rust program with a subscriber of its own adds a tracing-opentelemetry layer to
//! it instead, and leaves `otlp_endpoint` unset.

use crate::config::Config;
use crate::error::Result;

/// Starts exporting to `config.otlp_endpoint`, once per process.
pub(crate) fn start(config: &Config) -> Result<()> {
    match &config.otlp_endpoint {
        None => Ok(()),
        Some(endpoint) => exporter::start(endpoint),
    }
}

/// Sends the spans that wait in the batch (called when a client closes).
pub(crate) async fn flush() {
    exporter::flush().await
}

#[cfg(feature = "otlp")]
mod exporter {
    use std::sync::Mutex;

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{SpanExporter, WithExportConfig};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use opentelemetry_sdk::Resource;

    use crate::error::{invalid, Result};
    use crate::secret::redact;

    /// The endpoint and provider of this process's export.
    static EXPORTING: Mutex<Option<(String, SdkTracerProvider)>> = Mutex::new(None);

    pub fn start(endpoint: &str) -> Result<()> {
        let mut exporting = EXPORTING.lock().unwrap_or_else(|e| e.into_inner());
        match &*exporting {
            Some((current, _)) if current == endpoint => return Ok(()),
            Some((current, _)) => {
                return Err(invalid(format!(
                    "this process already exports spans to {}; otlp_endpoint {} cannot be added",
                    redact(current),
                    redact(endpoint)
                )))
            }
            None => {}
        }
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let spans = SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .build()
            .map_err(|e| invalid(redact(&format!("otlp_endpoint {endpoint:?}: {e}"))))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(spans)
            .with_resource(Resource::builder().build())
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("qtask"));
        if !crate::logs::install_with(Box::new(layer)) {
            return Err(invalid(
                "otlp_endpoint: this process already has a tracing subscriber of its own; \
                 add a tracing-opentelemetry layer to it instead",
            ));
        }
        opentelemetry::global::set_tracer_provider(provider.clone());
        *exporting = Some((endpoint.to_string(), provider));
        Ok(())
    }

    pub async fn flush() {
        let provider = EXPORTING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(_, provider)| provider.clone());
        if let Some(provider) = provider {
            // force_flush blocks until the batch was sent.
            let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
        }
    }
}

#[cfg(not(feature = "otlp"))]
mod exporter {
    pub fn start(endpoint: &str) -> crate::Result<()> {
        Err(crate::error::invalid(format!(
            "otlp_endpoint {:?}: qtask-core was built without the `otlp` feature",
            crate::secret::redact(endpoint)
        )))
    }

    pub async fn flush() {}
}
