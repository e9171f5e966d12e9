#!/usr/bin/env node
// tools/package/check.mjs [PROJECT_DIR] -- the Salesforce package's offline checks,
// since no org is reachable here (the README's "The Salesforce package"):
//   1. every Apex class (.cls) and trigger (.trigger) under the project's package
//      directories parses with @apexdevtools/apex-parser;
//   2. every .xml file is well-formed (fast-xml-parser, SDR's own parser, which
//      on its own lets an unclosed element through);
//   3. @salesforce/source-deploy-retrieve converts the source to metadata format
//      (what `sf project deploy` sends), into a scratch folder it then removes.
// PROJECT_DIR (default: the repository) holds sfdx-project.json. Prints one
// `path:line:column: message` per problem, paths relative to PROJECT_DIR, and
// exits 1 when there is any; 0 with a one-line summary otherwise; 2 when the npm
// packages are missing.
// The npm packages come from `make setup` (npm ci in tools/package).
import { readFileSync, readdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';

// Imported here, not above, so that a checkout without them gets told what to do.
let CharStreams, ApexLexer, ApexParser, CaseInsensitiveInputStream, CommonTokenStream, ComponentSet, MetadataConverter;
let XMLValidator;
try {
  ({ XMLValidator } = await import('fast-xml-parser'));
  ({ CharStreams } = await import('antlr4ts'));
  ({ ApexLexer, ApexParser, CaseInsensitiveInputStream, CommonTokenStream } = await import('@apexdevtools/apex-parser'));
  ({ ComponentSet, MetadataConverter } = await import('@salesforce/source-deploy-retrieve'));
} catch (e) {
  console.error(`package check: tools/package/node_modules is missing or incomplete (${e.code || e.message}): run \`make setup\` (npm ci in tools/package)`);
  process.exit(2);
}

const root = resolve(process.argv[2] || join(dirname(fileURLToPath(import.meta.url)), '..', '..'));
const problems = [];
const MAX_MESSAGE = 240; // ANTLR lists every token it expected
function problem(path, line, column, message) {
  const text = message.replace(/\\n|\s+/g, ' ').trim();
  const short = text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE)}...` : text;
  problems.push(`${relative(root, path)}:${line}:${column}: ${short}`);
}

function packageDirs() {
  const file = join(root, 'sfdx-project.json');
  try {
    const dirs = JSON.parse(readFileSync(file, 'utf8')).packageDirectories || [];
    return dirs.map((d) => join(root, d.path));
  } catch (e) {
    problem(file, 1, 1, `cannot read: ${e.message}`);
    return [];
  }
}

function filesUnder(dir, suffixes) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(path, suffixes));
    else if (suffixes.some((s) => entry.name.endsWith(s))) out.push(path);
  }
  return out.sort();
}

// Lexer and parser errors both land in problems (the default listener only prints).
function parseApex(path) {
  const listener = { syntaxError: (_r, _sym, line, col, msg) => problem(path, line, col + 1, msg) };
  const lexer = new ApexLexer(new CaseInsensitiveInputStream(CharStreams.fromString(readFileSync(path, 'utf8'), path)));
  lexer.removeErrorListeners();
  lexer.addErrorListener(listener);
  const parser = new ApexParser(new CommonTokenStream(lexer));
  parser.removeErrorListeners();
  parser.addErrorListener(listener);
  if (path.endsWith('.trigger')) parser.triggerUnit();
  else parser.compilationUnit();
}

// Files no component claims would be left out of the deploy without a word
// (a class without its -meta.xml, a field file in the wrong folder).
function unclaimed(dirs, components) {
  const claimed = new Set();
  for (const c of components) {
    if (c.xml) claimed.add(c.xml);
    for (const f of c.walkContent()) claimed.add(f);
    for (const child of c.getChildren()) if (child.xml) claimed.add(child.xml);
  }
  for (const dir of dirs) {
    for (const path of filesUnder(dir, [''])) {
      if (!claimed.has(path)) problem(path, 1, 1, 'belongs to no metadata component: it would not be deployed');
    }
  }
}

function checkXml(path) {
  const result = XMLValidator.validate(readFileSync(path, 'utf8'));
  if (result !== true) problem(path, result.err.line, result.err.col, `${result.err.code}: ${result.err.msg}`);
}

async function convert(dirs) {
  const out = mkdtempSync(join(tmpdir(), 'package-check-'));
  try {
    const set = ComponentSet.fromSource(dirs);
    const components = set.getSourceComponents().toArray();
    unclaimed(dirs, components);
    await new MetadataConverter().convert(set, 'metadata', { type: 'directory', outputDirectory: out });
    return components.length;
  } catch (e) {
    // SDR names the file in its message, and for bad XML its line
    const path = (e.message.match(/(\/[^\s'"]+)/) || [])[1];
    const line = (e.message.match(/line: (\d+)/) || [])[1];
    problem(path || root, line || 1, 1, `${e.name}: ${e.message}`);
    return 0;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

const dirs = packageDirs();
let apex = 0;
for (const dir of dirs) {
  for (const path of filesUnder(dir, ['.cls', '.trigger'])) {
    parseApex(path);
    apex += 1;
  }
}
for (const dir of dirs) filesUnder(dir, ['.xml']).forEach(checkXml);
const converted = dirs.length && !problems.length ? await convert(dirs) : 0;
if (problems.length) {
  for (const p of problems) console.error(p);
  console.error(`package check: ${problems.length} problem(s)`);
  process.exit(1);
}
console.log(`package check: ${apex} Apex files parse; ${converted} components convert to metadata format`);
