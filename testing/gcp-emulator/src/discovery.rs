//! The contract: Google's discovery documents (shipped in google-api-python-client), by
//! which every JSON body the emulator receives or sends is checked. A field the real API
//! would reject (misspelt, mistyped, an unknown enum value) is refused the way Google's
//! front end refuses it, and a response of the emulator's own that the document does not
//! allow is its bug, answered 500. An enum may be given by number too, as proto3's JSON
//! allows and the google-cloud-rust clients of proto-based APIs (GKE's) write it: the
//! document does not say which numbers there are, so any is taken.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

/// One API's discovery document (`iam.v1.json`, `storage.v1.json`, …).
pub struct Api {
    schemas: Map<String, Value>,
    methods: Vec<Method>,
}

/// A REST method of the document.
#[derive(Debug)]
pub struct Method {
    /// Its id, e.g. `compute.instances.insert`.
    pub id: String,
    verb: String,
    /// The path from the root URL, e.g. `v1/projects/{projectsId}/serviceAccounts`.
    template: Vec<String>,
    /// The schema of its request body, if it takes one.
    pub request: Option<String>,
    /// The schema of its response body, if it returns one.
    pub response: Option<String>,
}

impl Api {
    /// Reads `<dir>/<name>.json` (e.g. `iam.v1`).
    pub fn load(dir: &Path, name: &str) -> Result<Self, String> {
        let path = dir.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self::new(&doc))
    }

    /// The API of a parsed document.
    pub fn new(doc: &Value) -> Self {
        let service_path = doc["servicePath"].as_str().unwrap_or_default();
        let mut methods = vec![];
        collect_methods(&doc["resources"], service_path, &mut methods);
        let schemas = doc["schemas"].as_object().cloned().unwrap_or_default();
        Self { schemas, methods }
    }

    /// The method serving `verb path` (a path without its query, from the root URL), if any.
    pub fn method(&self, verb: &str, path: &str) -> Option<&Method> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        self.methods.iter().find(|m| m.verb == verb && matches(&m.template, &segments))
    }

    /// Checks `body` against the schema `schema`: `Err` is Google's own message for the
    /// first field it would refuse.
    pub fn check(&self, schema: &str, body: &Value) -> Result<(), String> {
        self.check_value(&serde_json::json!({ "$ref": schema }), body, "")
    }

    fn check_value(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        if let Some(name) = schema["$ref"].as_str() {
            let Some(target) = self.schemas.get(name) else {
                return Err(format!("the discovery document has no schema `{name}`"));
            };
            return self.check_value(target, value, at);
        }
        let invalid = |expected: &str| Err(format!("Invalid value at '{at}' ({expected}), {value}"));
        match (schema["type"].as_str(), value) {
            (_, Value::Null) => Ok(()),
            (Some("object"), Value::Object(fields)) => self.check_object(schema, fields, at),
            (Some("array"), Value::Array(items)) => {
                items.iter().try_for_each(|item| self.check_value(&schema["items"], item, at))
            }
            (Some("string"), Value::String(s)) => match schema["enum"].as_array() {
                Some(allowed) if !allowed.iter().any(|a| a == s) => invalid("TYPE_ENUM"),
                _ if schema["format"] == "int64" || schema["format"] == "uint64" => {
                    s.parse::<i128>().map(|_| ()).or_else(|_| invalid("TYPE_INT64"))
                }
                _ => Ok(()),
            },
            (Some("string"), Value::Number(n)) if schema.get("enum").is_some() => {
                match n.as_i64().map(i32::try_from) {
                    Some(Ok(_)) => Ok(()),
                    _ => invalid("TYPE_ENUM"),
                }
            }
            // int64 fields are strings in Google's JSON, but a number is accepted too.
            (Some("string"), Value::Number(_))
                if schema["format"].as_str().is_some_and(|f| f.contains("int")) =>
            {
                Ok(())
            }
            (Some("string"), _) => invalid("TYPE_STRING"),
            (Some("integer"), Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(()),
            (Some("integer"), _) => invalid("TYPE_INT32"),
            (Some("number"), Value::Number(_)) => Ok(()),
            (Some("number"), _) => invalid("TYPE_DOUBLE"),
            (Some("boolean"), Value::Bool(_)) => Ok(()),
            (Some("boolean"), _) => invalid("TYPE_BOOL"),
            (Some("any"), _) => Ok(()),
            (Some("object"), _) => invalid("TYPE_MESSAGE"),
            (other, _) => Err(format!("the discovery document gives '{at}' the type {other:?}")),
        }
    }

    fn check_object(&self, schema: &Value, fields: &Map<String, Value>, at: &str) -> Result<(), String> {
        let properties = schema["properties"].as_object();
        for (name, value) in fields {
            let here = if at.is_empty() { name.clone() } else { format!("{at}.{name}") };
            let field = properties.and_then(|p| p.get(name)).or_else(|| schema.get("additionalProperties"));
            let Some(field) = field else {
                let within = if at.is_empty() { String::new() } else { format!(" at '{at}'") };
                return Err(format!(
                    "Invalid JSON payload received. Unknown name \"{name}\"{within}: Cannot find field."
                ));
            };
            self.check_value(field, value, &here)?;
        }
        Ok(())
    }
}

impl Method {
    /// The path parameters of `path` (a path [`Api::method`] found this method for):
    /// `{zone}` of `…/zones/{zone}/instances` → `zone`, `{+name}` → `name` (the rest).
    pub fn params(&self, path: &str) -> BTreeMap<String, String> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut params = BTreeMap::new();
        for (i, part) in self.template.iter().enumerate() {
            let Some((name, suffix)) = part.strip_prefix('{').and_then(|p| p.split_once('}')) else {
                continue;
            };
            let value = match name.strip_prefix('+') {
                Some(_) => segments.get(i..).map(|rest| rest.join("/")),
                None => segments.get(i).map(|s| s.strip_suffix(suffix).unwrap_or(s).to_owned()),
            };
            params.insert(name.trim_start_matches('+').to_owned(), value.unwrap_or_default());
        }
        params
    }
}

/// Every method under `resources`, recursively, with its path from the root URL.
fn collect_methods(resources: &Value, service_path: &str, into: &mut Vec<Method>) {
    let Some(resources) = resources.as_object() else { return };
    for resource in resources.values() {
        for (_, m) in resource["methods"].as_object().into_iter().flatten() {
            let path = m["flatPath"].as_str().or(m["path"].as_str()).unwrap_or_default();
            let full = format!("{service_path}{path}");
            into.push(Method {
                id: m["id"].as_str().unwrap_or_default().to_owned(),
                verb: m["httpMethod"].as_str().unwrap_or_default().to_owned(),
                template: full.trim_start_matches('/').split('/').map(str::to_owned).collect(),
                request: m["request"]["$ref"].as_str().map(str::to_owned),
                response: m["response"]["$ref"].as_str().map(str::to_owned),
            });
        }
        collect_methods(&resource["resources"], service_path, into);
    }
}

/// Whether path segments fit a template: `{name}` is one segment, `{+name}` the rest, and a
/// literal after a variable (`{resource}:getIamPolicy`) must end the segment.
fn matches(template: &[String], segments: &[&str]) -> bool {
    let mut s = segments.iter();
    for (i, part) in template.iter().enumerate() {
        if part.starts_with("{+") {
            return i < segments.len();
        }
        let Some(segment) = s.next() else { return false };
        let fits = match part.find('}') {
            Some(end) if part.starts_with('{') => {
                let suffix = &part[end + 1..];
                segment.len() > suffix.len() && segment.ends_with(suffix)
            }
            _ => part == segment,
        };
        if !fits {
            return false;
        }
    }
    s.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn iam() -> Api {
        Api::new(&json!({
            "servicePath": "",
            "resources": {"projects": {"resources": {"serviceAccounts": {
                "methods": {
                    "create": {"id": "iam.projects.serviceAccounts.create", "httpMethod": "POST",
                        "flatPath": "v1/projects/{projectsId}/serviceAccounts",
                        "request": {"$ref": "CreateServiceAccountRequest"},
                        "response": {"$ref": "ServiceAccount"}},
                    "getIamPolicy": {"id": "iam.projects.serviceAccounts.getIamPolicy", "httpMethod": "POST",
                        "flatPath": "v1/projects/{projectsId}/serviceAccounts/{serviceAccountsId}:getIamPolicy"}
                }}}}},
            "schemas": {
                "CreateServiceAccountRequest": {"type": "object", "properties": {
                    "accountId": {"type": "string"},
                    "serviceAccount": {"$ref": "ServiceAccount"}}},
                "ServiceAccount": {"type": "object", "properties": {
                    "displayName": {"type": "string"},
                    "oauth2ClientId": {"type": "string"},
                    "disabled": {"type": "boolean"},
                    "keyType": {"type": "string", "enum": ["USER_MANAGED", "SYSTEM_MANAGED"]},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}
            }
        }))
    }

    #[test]
    fn methods_are_found_by_verb_and_path() {
        let api = iam();
        let create = api.method("POST", "/v1/projects/p/serviceAccounts").unwrap();
        assert_eq!(create.request.as_deref(), Some("CreateServiceAccountRequest"));
        assert_eq!(create.response.as_deref(), Some("ServiceAccount"));
        assert_eq!(create.id, "iam.projects.serviceAccounts.create");
        let policy = api.method("POST", "/v1/projects/p/serviceAccounts/a@p.iam:getIamPolicy").unwrap();
        assert_eq!(policy.request, None);
        let params = policy.params("/v1/projects/p/serviceAccounts/a@p.iam:getIamPolicy");
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(params, [("projectsId", "p"), ("serviceAccountsId", "a@p.iam")]);
        assert!(api.method("GET", "/v1/projects/p/serviceAccounts").is_none());
        assert!(api.method("POST", "/v1/projects/p/serviceAccounts/a/extra").is_none());
    }

    #[test]
    fn a_body_the_document_allows_passes() {
        let body = json!({"accountId": "ada", "serviceAccount": {"displayName": "Ada", "disabled": false,
            "keyType": "USER_MANAGED", "labels": {"a": "b"}}});
        assert_eq!(iam().check("CreateServiceAccountRequest", &body), Ok(()));
        let by_number = json!({"serviceAccount": {"keyType": 1}});
        assert_eq!(iam().check("CreateServiceAccountRequest", &by_number), Ok(()));
    }

    #[test]
    fn a_misspelt_or_mistyped_field_is_refused_as_google_refuses_it() {
        let api = iam();
        let misspelt = json!({"accountID": "ada"});
        assert_eq!(
            api.check("CreateServiceAccountRequest", &misspelt),
            Err("Invalid JSON payload received. Unknown name \"accountID\": Cannot find field.".into())
        );
        let nested = json!({"serviceAccount": {"display_name": "Ada"}});
        assert_eq!(
            api.check("CreateServiceAccountRequest", &nested),
            Err("Invalid JSON payload received. Unknown name \"display_name\" at 'serviceAccount': Cannot find field."
                .into())
        );
        let mistyped = json!({"serviceAccount": {"disabled": "no"}});
        assert_eq!(
            api.check("CreateServiceAccountRequest", &mistyped),
            Err("Invalid value at 'serviceAccount.disabled' (TYPE_BOOL), \"no\"".into())
        );
        let unknown_enum = json!({"serviceAccount": {"keyType": "ROOT"}});
        assert!(api.check("CreateServiceAccountRequest", &unknown_enum).unwrap_err().contains("TYPE_ENUM"));
        let not_an_enum = json!({"serviceAccount": {"displayName": 1}});
        assert!(api.check("CreateServiceAccountRequest", &not_an_enum).unwrap_err().contains("TYPE_STRING"));
        let too_big = json!({"serviceAccount": {"keyType": 1_u64 << 40}});
        assert!(api.check("CreateServiceAccountRequest", &too_big).unwrap_err().contains("TYPE_ENUM"));
    }
}
