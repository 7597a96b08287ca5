//! Configured model names → provider, upstream name, context size, prices, tokenizer.

use std::{collections::HashMap, sync::Arc};

use super::{
    HttpClient, Provider, anthropic::AnthropicProvider, echo::EchoProvider, openai::OpenAiProvider,
    timing::Overrides,
};
use crate::{
    config::{ModelSettings, ProviderKind, ProviderSettings, Settings},
    domain::{session::ModelCatalog, tokens::Tokenizer},
};

pub struct Model {
    pub name: String,
    pub upstream_name: String,
    pub provider: Arc<dyn Provider>,
    pub context_tokens: u32,
    pub input_usd_per_mtok: f64,
    pub output_usd_per_mtok: f64,
    pub tokenizer: Tokenizer,
    pub fallbacks: Vec<String>,
    /// Its own attempt settings, over `[routing]`'s.
    pub overrides: Overrides,
}

impl Model {
    /// Cost in billionths of a dollar (prices are per million tokens).
    pub fn cost_nano_usd(&self, prompt_tokens: u32, completion_tokens: u32) -> u64 {
        let nano = f64::from(prompt_tokens) * self.input_usd_per_mtok * 1000.0
            + f64::from(completion_tokens) * self.output_usd_per_mtok * 1000.0;
        nano.round().max(0.0) as u64
    }
}

pub struct ModelRegistry {
    models: HashMap<String, Arc<Model>>,
    /// Alias → canonical name.
    aliases: HashMap<String, String>,
    /// Canonical names in configuration order, for `/v1/models`.
    order: Vec<String>,
    /// Aliases in configuration order, listed after the names.
    alias_order: Vec<String>,
}

impl ModelRegistry {
    pub fn from_settings(settings: &Settings, client: &HttpClient) -> ModelRegistry {
        let providers: HashMap<&str, Arc<dyn Provider>> = settings
            .providers
            .iter()
            .map(|p| (p.name.as_str(), build_provider(p, client)))
            .collect();
        let mut registry = ModelRegistry {
            models: HashMap::new(),
            aliases: HashMap::new(),
            order: Vec::new(),
            alias_order: Vec::new(),
        };
        for m in &settings.models {
            // Validation guarantees the provider exists; skipping keeps this panic-free.
            let Some(provider) = providers.get(m.provider.as_str()) else {
                continue;
            };
            registry.insert(m, provider.clone());
        }
        registry
    }

    fn insert(&mut self, m: &ModelSettings, provider: Arc<dyn Provider>) {
        let tokenizer = m
            .tokenizer
            .as_deref()
            .and_then(Tokenizer::from_name)
            .unwrap_or_else(|| Tokenizer::for_model(m.upstream_name.as_deref().unwrap_or(&m.name)));
        let model = Model {
            name: m.name.clone(),
            upstream_name: m.upstream_name.clone().unwrap_or_else(|| m.name.clone()),
            provider,
            context_tokens: m.context_tokens,
            input_usd_per_mtok: m.input_usd_per_mtok,
            output_usd_per_mtok: m.output_usd_per_mtok,
            tokenizer,
            fallbacks: m.fallbacks.clone(),
            overrides: Overrides::from_model(m),
        };
        for alias in &m.aliases {
            self.aliases.insert(alias.clone(), m.name.clone());
            self.alias_order.push(alias.clone());
        }
        self.order.push(m.name.clone());
        self.models.insert(m.name.clone(), Arc::new(model));
    }

    /// A model by its name or one of its aliases.
    pub fn get(&self, name: &str) -> Option<&Arc<Model>> {
        let canonical = self.aliases.get(name).map_or(name, String::as_str);
        self.models.get(canonical)
    }

    /// Canonical names, in configuration order.
    pub fn names(&self) -> &[String] {
        &self.order
    }

    /// Every name a request may use: the canonical names, then the aliases.
    pub fn accepted_names(&self) -> impl Iterator<Item = &str> {
        self.order
            .iter()
            .chain(&self.alias_order)
            .map(String::as_str)
    }

    pub fn tokenizers(&self) -> impl Iterator<Item = Tokenizer> + '_ {
        self.models.values().map(|m| m.tokenizer)
    }
}

impl ModelCatalog for ModelRegistry {
    fn context_tokens(&self, model: &str) -> Option<u32> {
        self.get(model).map(|m| m.context_tokens)
    }
}

fn build_provider(p: &ProviderSettings, client: &HttpClient) -> Arc<dyn Provider> {
    let base_url = p.base_url.clone().unwrap_or_default();
    let key = p.api_key.as_ref().map(|k| k.expose().to_string());
    match p.kind {
        ProviderKind::Openai => Arc::new(OpenAiProvider::new(client.clone(), base_url, key)),
        ProviderKind::Anthropic => Arc::new(AnthropicProvider::new(client.clone(), base_url, key)),
        ProviderKind::Echo => Arc::new(EchoProvider::new()),
    }
}
