// Parses an AsyncAPI document with @asyncapi/parser and prints every diagnostic;
// exits 1 if any has severity error (or the document could not be parsed at all).
// Run through contract/asyncapi, which installs the parser in
// $BOXOFFICE_ASYNCAPI_CACHE (outside the clone, so a bare import would not find it).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

const [file] = process.argv.slice(2);
const cache = process.env.BOXOFFICE_ASYNCAPI_CACHE;
if (!file || !cache) {
  console.error('usage: BOXOFFICE_ASYNCAPI_CACHE=DIR node asyncapi-validate.mjs FILE');
  process.exit(2);
}
const require = createRequire(join(cache, 'package.json'));
const { Parser, DiagnosticSeverity } = require('@asyncapi/parser');

const path = resolve(file);
const { document, diagnostics } = await new Parser().parse(readFileSync(path, 'utf8'), {
  source: path,
});

const names = {
  [DiagnosticSeverity.Error]: 'error',
  [DiagnosticSeverity.Warning]: 'warning',
  [DiagnosticSeverity.Information]: 'info',
  [DiagnosticSeverity.Hint]: 'hint',
};
for (const d of diagnostics) {
  // Ranges are 0-based; editors count lines from 1.
  const line = d.range ? `:${d.range.start.line + 1}:${d.range.start.character + 1}` : '';
  const at = d.path?.length ? ` (${d.path.join('.')})` : '';
  console.log(`${names[d.severity] ?? d.severity} ${file}${line} ${d.code}: ${d.message}${at}`);
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error).length;
if (errors > 0 || !document) {
  console.error(`${file}: ${errors} error(s); not a valid AsyncAPI document`);
  process.exit(1);
}
console.log(
  `${file}: valid AsyncAPI ${document.version()} (${document.channels().length} channels, ` +
    `${document.operations().length} operations, ${document.allMessages().length} messages, ` +
    `${diagnostics.length - errors} warning(s) or note(s))`,
);
