// Validates prometheus-operator objects against its published schemas (the validators of
// the npm package @kubernetes-models/prometheus-operator, which .ci/install-prometheus
// installs). Run as `node prometheus_operator_schema.mjs <node_modules folder>`. Reads a
// JSON list of objects on stdin; writes, for each, its kind, name and the schema's
// complaints (empty when valid) as one JSON list on stdout.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const models = join(process.argv[2], "@kubernetes-models", "prometheus-operator");

const objects = JSON.parse(readFileSync(0, "utf8"));
const verdicts = [];
for (const object of objects) {
  const [group, version] = object.apiVersion.split("/");
  const module = await import(
    pathToFileURL(join(models, group, version, `${object.kind}.js`)).href
  );
  let errors = [];
  try {
    new module[object.kind](object).validate();
  } catch (error) {
    errors = (error.errors ?? [{ instancePath: "", message: String(error) }]).map(
      (each) => `${each.instancePath || "/"}: ${each.message}`,
    );
  }
  verdicts.push({ kind: object.kind, name: object.metadata.name, errors });
}
process.stdout.write(JSON.stringify(verdicts));
