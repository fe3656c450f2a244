//! A pipeline's sinks, checked and compiled: each with its connector, its dead-letter queue,
//! its route and its own transforms, ready to build fresh instances for every run.

use std::sync::Arc;

use sluice_sdk::{BuildContext, Registry, RegistryError};

use crate::config::sinks::SinkPlan;
use crate::config::{ConfigError, ConnectorSpec, Declared};
use crate::transform::condition::Route;
use crate::transform::Chain;

/// One sink of a validated pipeline.
pub struct SinkDef {
    pub name: Arc<str>,
    pub plan: SinkPlan,
    /// `None`: every record.
    pub route: Option<Route>,
    /// This sink's own transforms, applied after routing.
    pub chain: Chain,
    pub dead_letter: ConnectorSpec,
}

/// Places a registry's complaint about the connector of `section` (of type `type_name`).
pub fn place(at: &Declared, section: &str, type_name: &str, e: RegistryError) -> ConfigError {
    match e {
        RegistryError::UnknownType { .. } => at.error(&format!("{section}.type"), e.to_string()),
        RegistryError::Config(c) => {
            let path = match &c.path {
                Some(p) => format!("{section}.{p}"),
                None => section.to_string(),
            };
            at.error(&path, format!("{section} `{type_name}`: {}", c.message))
        }
        other => at.error(section, other.to_string()),
    }
}

impl SinkDef {
    /// Checks the sink's connector, fallback, dead-letter queue, route and transforms;
    /// every problem is reported with its position.
    pub fn validate(
        plan: SinkPlan,
        pipeline_dlq: &ConnectorSpec,
        registry: &Registry,
        build: &BuildContext,
        at: &Declared,
        errors: &mut Vec<ConfigError>,
    ) -> Option<SinkDef> {
        let before = errors.len();
        let section = plan.section.clone();
        if let Err(e) = registry.build_sink(&plan.spec.type_name, plan.spec.config.clone(), build) {
            errors.push(place(at, &section, &plan.spec.type_name, e));
        }
        if let Some(f) = &plan.fallback {
            let here = format!("{section}.fallback.sink");
            if let Err(e) = registry.build_sink(&f.sink.type_name, f.sink.config.clone(), build) {
                errors.push(place(at, &here, &f.sink.type_name, e));
            }
        }
        let dead_letter = plan
            .dead_letter
            .clone()
            .unwrap_or_else(|| pipeline_dlq.clone());
        if plan.named && dead_letter != *pipeline_dlq {
            let here = format!("{section}.dead_letter");
            if let Err(e) = registry.build_dead_letter(
                &dead_letter.type_name,
                dead_letter.config.clone(),
                build,
            ) {
                errors.push(place(at, &here, &dead_letter.type_name, e));
            }
        }
        let route = match &plan.route {
            None => None,
            Some(r) => match Route::compile(r) {
                Ok(r) => Some(r),
                Err(e) => {
                    for (p, m) in e {
                        let path = if p.is_empty() {
                            format!("{section}.route")
                        } else {
                            format!("{section}.route.{p}")
                        };
                        errors.push(at.error(&path, m));
                    }
                    None
                }
            },
        };
        let chain = match Chain::compile(&plan.transforms, registry, build, &at.below(&section)) {
            Ok(c) => Some(c),
            Err(mut e) => {
                errors.append(&mut e);
                None
            }
        };
        if errors.len() > before {
            return None;
        }
        Some(SinkDef {
            name: plan.name.as_str().into(),
            route,
            chain: chain?,
            dead_letter,
            plan,
        })
    }
}
