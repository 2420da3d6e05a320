//! The checks the IC applies to a module before installing it (the subset that matters for
//! canisters built from Rust): where imports come from, how exports are named, and the size
//! limits of `../shared/spec/ic-platform.md` A2. Each rejection names the rule it broke.

use std::collections::HashSet;

use wasmparser::{ExternalKind, Parser, Payload, TypeRef, Validator, WasmFeatures};

/// Module limits of the IC.
pub const MAX_MODULE_BYTES: usize = 100 << 20;
pub const MAX_CODE_SECTION_BYTES: usize = 10 << 20;
pub const MAX_FUNCTIONS: usize = 50_000;
pub const MAX_GLOBALS: usize = 1_000;
pub const MAX_EXPORTED_METHODS: usize = 1_000;
pub const MAX_INSTRUCTIONS_PER_FUNCTION: usize = 1_000_000;
pub const MAX_CUSTOM_SECTIONS: usize = 16;
pub const MAX_CUSTOM_SECTIONS_BYTES: usize = 1 << 20;

/// Exports the IC gives a meaning to when they start with `canister_`.
const SPECIAL_EXPORTS: [&str; 7] = [
    "canister_init",
    "canister_pre_upgrade",
    "canister_post_upgrade",
    "canister_inspect_message",
    "canister_heartbeat",
    "canister_global_timer",
    "canister_on_low_wasm_memory",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("invalid wasm module: {0}")]
    Invalid(String),
    #[error("rule 'imports only from ic0': the module imports {module}.{name}")]
    ForeignImport { module: String, name: String },
    #[error("rule 'no imported memories, tables or globals': the module imports {kind} {module}.{name}")]
    ImportKind { kind: &'static str, module: String, name: String },
    #[error("rule 'exported names': {name:?} starts with canister_ but is not a System API entry point")]
    BadExportName { name: String },
    #[error("rule 'exported names': method {name:?} is exported as both update and query")]
    DuplicateMethod { name: String },
    #[error("rule 'module size': {found} bytes, limit {limit}")]
    ModuleTooLarge { found: usize, limit: usize },
    #[error("rule 'code section size': {found} bytes, limit {limit}")]
    CodeTooLarge { found: usize, limit: usize },
    #[error("rule 'number of functions': {found}, limit {limit}")]
    TooManyFunctions { found: usize, limit: usize },
    #[error("rule 'number of globals': {found}, limit {limit}")]
    TooManyGlobals { found: usize, limit: usize },
    #[error("rule 'exported methods': {found}, limit {limit}")]
    TooManyMethods { found: usize, limit: usize },
    #[error("rule 'instructions per function': function {index} has {found}, limit {limit}")]
    FunctionTooLong { index: usize, found: usize, limit: usize },
    #[error("rule 'custom sections': {found} named icp:public/icp:private sections, limit {limit}")]
    TooManyCustomSections { found: usize, limit: usize },
    #[error("rule 'custom sections size': {found} bytes, limit {limit}")]
    CustomSectionsTooLarge { found: usize, limit: usize },
    #[error("rule 'reserved names': the module uses the host's reserved name {name:?}")]
    Reserved { name: String },
}

/// The wasm features the IC enables: SIMD without relaxed SIMD, bulk memory, reference types,
/// multi-value, sign extension, saturating conversions; no threads.
pub fn ic_features() -> WasmFeatures {
    let mut f = WasmFeatures::WASM2;
    f.remove(WasmFeatures::RELAXED_SIMD);
    f.remove(WasmFeatures::THREADS);
    f
}

/// What a valid module offers.
#[derive(Debug, Clone, Default)]
pub struct ModuleInfo {
    pub update_methods: Vec<String>,
    pub query_methods: Vec<String>,
    pub imports: Vec<String>,
    /// The `candid:service` metadata (public or private custom section), if present.
    pub candid_service: Option<String>,
}

pub fn validate(wasm: &[u8]) -> Result<ModuleInfo, ValidationError> {
    if wasm.len() > MAX_MODULE_BYTES {
        return Err(ValidationError::ModuleTooLarge { found: wasm.len(), limit: MAX_MODULE_BYTES });
    }
    Validator::new_with_features(ic_features()).validate_all(wasm).map_err(|e| ValidationError::Invalid(e.to_string()))?;
    let invalid = |e: wasmparser::BinaryReaderError| ValidationError::Invalid(e.to_string());

    let mut info = ModuleInfo::default();
    let (mut functions, mut globals, mut custom_count, mut custom_bytes) = (0usize, 0usize, 0usize, 0usize);
    let mut function_index = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::ImportSection(s) => {
                for import in s.into_imports() {
                    let import = import.map_err(invalid)?;
                    let (module, name) = (import.module.to_string(), import.name.to_string());
                    if module != "ic0" {
                        return Err(ValidationError::ForeignImport { module, name });
                    }
                    let kind = match import.ty {
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => {
                            functions += 1;
                            info.imports.push(name);
                            continue;
                        }
                        TypeRef::Memory(_) => "memory",
                        TypeRef::Table(_) => "table",
                        TypeRef::Global(_) => "global",
                        TypeRef::Tag(_) => "tag",
                    };
                    return Err(ValidationError::ImportKind { kind, module, name });
                }
            }
            Payload::FunctionSection(s) => functions += s.count() as usize,
            Payload::GlobalSection(s) => globals += s.count() as usize,
            Payload::ExportSection(s) => {
                let mut seen = HashSet::new();
                for export in s {
                    let export = export.map_err(invalid)?;
                    let name = export.name;
                    if name.starts_with("__ic_host") {
                        return Err(ValidationError::Reserved { name: name.to_string() });
                    }
                    if export.kind != ExternalKind::Func {
                        continue;
                    }
                    let method = name
                        .strip_prefix("canister_update ")
                        .map(|m| (m, true))
                        .or_else(|| name.strip_prefix("canister_query ").map(|m| (m, false)))
                        .or_else(|| name.strip_prefix("canister_composite_query ").map(|m| (m, false)));
                    match method {
                        Some((m, update)) => {
                            if !seen.insert(m.to_string()) {
                                return Err(ValidationError::DuplicateMethod { name: m.to_string() });
                            }
                            if update { info.update_methods.push(m.to_string()) } else { info.query_methods.push(m.to_string()) }
                        }
                        None if name.starts_with("canister_") && !SPECIAL_EXPORTS.contains(&name) => {
                            return Err(ValidationError::BadExportName { name: name.to_string() });
                        }
                        None => {}
                    }
                }
                if seen.len() > MAX_EXPORTED_METHODS {
                    return Err(ValidationError::TooManyMethods { found: seen.len(), limit: MAX_EXPORTED_METHODS });
                }
            }
            Payload::CodeSectionStart { size, .. } => {
                if size as usize > MAX_CODE_SECTION_BYTES {
                    return Err(ValidationError::CodeTooLarge { found: size as usize, limit: MAX_CODE_SECTION_BYTES });
                }
            }
            Payload::CodeSectionEntry(body) => {
                let mut reader = body.get_operators_reader().map_err(invalid)?;
                let mut count = 0usize;
                while !reader.eof() {
                    reader.read().map_err(invalid)?;
                    count += 1;
                }
                if count > MAX_INSTRUCTIONS_PER_FUNCTION {
                    return Err(ValidationError::FunctionTooLong { index: function_index, found: count, limit: MAX_INSTRUCTIONS_PER_FUNCTION });
                }
                function_index += 1;
            }
            Payload::CustomSection(c) => {
                let name = c.name();
                if let Some(meta) = name.strip_prefix("icp:public ").or_else(|| name.strip_prefix("icp:private ")) {
                    custom_count += 1;
                    custom_bytes += c.data().len() + meta.len();
                    if meta == "candid:service" {
                        info.candid_service = Some(String::from_utf8_lossy(c.data()).into_owned());
                    }
                }
            }
            _ => {}
        }
    }
    if functions > MAX_FUNCTIONS {
        return Err(ValidationError::TooManyFunctions { found: functions, limit: MAX_FUNCTIONS });
    }
    if globals > MAX_GLOBALS {
        return Err(ValidationError::TooManyGlobals { found: globals, limit: MAX_GLOBALS });
    }
    if custom_count > MAX_CUSTOM_SECTIONS {
        return Err(ValidationError::TooManyCustomSections { found: custom_count, limit: MAX_CUSTOM_SECTIONS });
    }
    if custom_bytes > MAX_CUSTOM_SECTIONS_BYTES {
        return Err(ValidationError::CustomSectionsTooLarge { found: custom_bytes, limit: MAX_CUSTOM_SECTIONS_BYTES });
    }
    Ok(info)
}
