// Validates Kubernetes manifests offline, without a cluster: node validate.mjs FILE.yaml...
// Every object of every (multi-document) file is checked twice:
//  1. against Kubernetes' JSON schema of its apiVersion/kind, as compiled by the npm package kubernetes-models
//     (types, required fields, enums, formats such as int32): what the API server's schema validation refuses;
//  2. for fields that do not exist (a typo such as `replica:`), which those schemas let through: every key must be a
//     field of its type in the OpenAPI type map of @kubernetes/client-node (what `kubectl apply --validate=strict`
//     refuses with a cluster).
// Both packages come at the versions in package-lock.json (npm ci). Exit code 1 on any problem, 2 on bad usage.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import * as openapi from "@kubernetes/client-node/dist/gen/models/all.js";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate.mjs FILE.yaml...");
  process.exit(2);
}

/** The kubernetes-models class of apiVersion/kind ("apps/v1" → kubernetes-models/apps/v1/Deployment), or null. */
async function schemaModel(apiVersion, kind) {
  try {
    const module = await import(`kubernetes-models/${apiVersion}/${kind}`);
    return module[kind] ?? null;
  } catch {
    return null;
  }
}

/** The @kubernetes/client-node type name of apiVersion/kind ("apps/v1", "Deployment" → "V1Deployment"). */
function openapiTypeName(apiVersion, kind) {
  const version = apiVersion.split("/").pop();
  return version.charAt(0).toUpperCase() + version.slice(1) + kind;
}

/** Keys that are not fields of `type`, recursively (objects, arrays and maps of known types). */
function unknownFields(value, type, path, problems) {
  if (value === null || value === undefined) return;
  let m;
  if ((m = /^Array<(.+)>$/.exec(type))) {
    if (Array.isArray(value)) value.forEach((v, i) => unknownFields(v, m[1], `${path}/${i}`, problems));
    return;
  }
  if ((m = /^\{ \[key: string\]: (.+); \}$/.exec(type))) {
    if (typeof value === "object" && !Array.isArray(value))
      for (const [k, v] of Object.entries(value)) unknownFields(v, m[1], `${path}/${k}`, problems);
    return;
  }
  const model = openapi[type];
  if (typeof model?.getAttributeTypeMap !== "function") return;   // string, number, IntOrString, any...
  if (typeof value !== "object" || Array.isArray(value)) return;    // a wrong type: the schema reports it
  const fields = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [key, v] of Object.entries(value)) {
    if (!fields.has(key)) {
      const near = closest(key, [...fields.keys()]);
      problems.push(`${path}/${key}: unknown field "${key}" in ${type}${near ? ` (did you mean "${near}"?)` : ""}`);
    } else {
      unknownFields(v, fields.get(key), `${path}/${key}`, problems);
    }
  }
}

/** The known field nearest to a misspelt one (edit distance at most a third of its length), or null. */
function closest(key, known) {
  const distance = (a, b) => {
    let row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      const next = [i];
      for (let j = 1; j <= b.length; j++)
        next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1));
      row = next;
    }
    return row[b.length];
  };
  const [best] = known.map((k) => [k, distance(key, k)]).sort((x, y) => x[1] - y[1]);
  return best && best[1] <= Math.max(1, Math.floor(key.length / 3)) ? best[0] : null;
}

let objects = 0, failed = 0;
for (const file of files) {
  const documents = parseAllDocuments(readFileSync(file, "utf8"), { uniqueKeys: true });
  for (const [index, document] of documents.entries()) {
    const problems = document.errors.map((e) => `YAML: ${e.message}`);
    const object = problems.length === 0 ? document.toJS() : null;
    if (object === null && problems.length === 0) continue;          // an empty document (a trailing ---)
    const label = `${file}: document ${index + 1}` + (object ? ` ${object.kind ?? "?"}/${object.metadata?.name ?? "?"}` : "");
    if (object) {
      objects++;
      const { apiVersion, kind } = object;
      if (typeof apiVersion !== "string" || typeof kind !== "string") {
        problems.push("apiVersion and kind must be strings");
      } else {
        const Model = await schemaModel(apiVersion, kind);
        if (!Model) {
          problems.push(`no Kubernetes schema for apiVersion ${apiVersion}, kind ${kind}`);
        } else {
          try {
            new Model(object).validate();
          } catch (e) {
            problems.push(...String(e.message).split(", ").map((p) => `schema: ${p.replace(/^data/, "")}`));
          }
          const type = openapiTypeName(apiVersion, kind);
          if (typeof openapi[type]?.getAttributeTypeMap !== "function") problems.push(`no OpenAPI type ${type} for unknown-field checks`);
          else unknownFields(object, type, "", problems);
        }
      }
    }
    if (problems.length > 0) {
      failed++;
      console.log(`INVALID ${label}`);
      for (const p of problems) console.log(`  ${p}`);
    }
  }
}
console.log(`${objects} object(s) in ${files.length} file(s): ${failed === 0 ? "all valid" : `${failed} invalid`}`);
process.exit(failed === 0 && objects > 0 ? 0 : 1);
