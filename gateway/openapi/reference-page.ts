import { createHash } from 'node:crypto'
import type { Json, JsonObject } from './document.ts'

/*
 * `GET /docs`: the document rendered on the server as plain HTML, without a script or anything
 * loaded from elsewhere, so it works offline and under the gateway's CSP (`default-src 'none'`): the
 * one inline style is allowed by its hash, nothing else is.
 */

const STYLE = `
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}
h2{border-bottom:1px solid #ccc;margin-top:2.5rem}
details{border:1px solid #ddd;border-radius:4px;margin:.4rem 0;padding:.3rem .6rem}
summary{cursor:pointer}
code,pre{font:13px/1.4 ui-monospace,monospace}
pre{background:#f6f6f6;padding:.5rem;overflow-x:auto}
table{border-collapse:collapse;margin:.4rem 0}
td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}
.m{display:inline-block;min-width:4.2rem;font-weight:600;text-transform:uppercase}
.a{color:#555;font-size:90%}
`

/** The `style-src` source that allows the page's one inline style. */
export const STYLE_SOURCE = `'sha256-${createHash('sha256').update(STYLE).digest('base64')}'`

const METHODS = ['get', 'head', 'post', 'put', 'patch', 'delete', 'options', 'trace']

function escape (text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`)
}

function isObject (value: Json | undefined): value is JsonObject {
  return value !== null && value !== undefined && typeof value === 'object' && !Array.isArray(value)
}

function text (value: Json | undefined): string {
  return typeof value === 'string' ? value : ''
}

function anchor (name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, '-')
}

/** Inline code and paragraphs of a description; nothing else of Markdown. */
function prose (value: Json | undefined): string {
  const source = text(value)
  if (source === '') return ''
  return source.split(/\n{2,}/).map((paragraph) => `<p>${escape(paragraph).replace(/`([^`]+)`/g, '<code>$1</code>')}</p>`).join('')
}

function schemaBlock (schema: Json | undefined): string {
  if (schema === undefined) return ''
  const ref = isObject(schema) ? text(schema.$ref) : ''
  if (ref.startsWith('#/components/schemas/')) {
    const name = ref.slice('#/components/schemas/'.length)
    return `<p><a href="#schema-${anchor(name)}">${escape(name)}</a></p>`
  }
  return `<pre>${escape(JSON.stringify(schema, null, 2))}</pre>`
}

function contentSchema (holder: Json | undefined): string {
  if (isObject(holder) && text(holder.$ref).startsWith('#/components/responses/')) return schemaBlock({ $ref: `#/components/schemas/${text(holder.$ref).slice('#/components/responses/'.length)}` })
  if (!isObject(holder) || !isObject(holder.content)) return ''
  return Object.entries(holder.content).map(([type, media]) => `<p><code>${escape(type)}</code></p>${schemaBlock(isObject(media) ? media.schema : undefined)}`).join('')
}

function parametersTable (parameters: Json | undefined): string {
  if (!Array.isArray(parameters) || parameters.length === 0) return ''
  const rows = parameters.filter(isObject).map((p) => `<tr><td><code>${escape(text(p.name))}</code></td><td>${escape(text(p.in))}</td><td>${p.required === true ? 'yes' : ''}</td><td>${escape(text(isObject(p.schema) ? p.schema.type : undefined))}</td><td>${escape(text(p.description) || text(isObject(p.schema) ? p.schema.description : undefined))}</td></tr>`)
  return `<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>required</th><th>type</th><th>description</th></tr>${rows.join('')}</table>`
}

function operationBlock (method: string, path: string, operation: JsonObject): string {
  const summary = text(operation.summary) || text(operation.description).split('\n')[0]
  const access = text(operation['x-access'])
  const responses = isObject(operation.responses)
    ? Object.entries(operation.responses).map(([status, response]) => `<h4>${escape(status)}${isObject(response) && text(response.description) !== '' ? ` — ${escape(text(response.description))}` : ''}</h4>${contentSchema(response)}`).join('')
    : ''
  return `<details id="${anchor(`${method}-${path}`)}"><summary><span class="m">${escape(method)}</span> <code>${escape(path)}</code> ${escape(summary)}${access === '' ? '' : ` <span class="a">(${escape(access)})</span>`}</summary>
${text(operation.summary) === '' ? '' : prose(operation.description)}${parametersTable(operation.parameters)}${isObject(operation.requestBody) ? `<h4>Request body</h4>${contentSchema(operation.requestBody)}` : ''}<h4>Responses</h4>${responses}</details>`
}

/** The page, from the merged document. */
export function referencePage (document: JsonObject): string {
  const info = isObject(document.info) ? document.info : {}
  const paths = isObject(document.paths) ? document.paths : {}
  const byTag = new Map<string, string[]>()
  for (const [path, item] of Object.entries(paths)) {
    if (!isObject(item)) continue
    for (const method of METHODS) {
      const operation = item[method]
      if (!isObject(operation)) continue
      const tag = Array.isArray(operation.tags) && typeof operation.tags[0] === 'string' ? operation.tags[0] : 'Other'
      byTag.set(tag, [...(byTag.get(tag) ?? []), operationBlock(method, path, operation)])
    }
  }
  const descriptions = new Map((Array.isArray(document.tags) ? document.tags.filter(isObject) : []).map((tag) => [text(tag.name), text(tag.description)]))
  const tags = [...byTag.keys()].sort((a, b) => a < b ? -1 : a > b ? 1 : 0)
  const schemas = isObject(document.components) && isObject(document.components.schemas) ? document.components.schemas : {}
  const title = `${text(info.title)} API reference`
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>${escape(title)}</h1>
${prose(info.description)}
<p>OpenAPI ${escape(text(document.openapi))} document: <a href="/openapi.json">/openapi.json</a>. Access (in brackets): <code>public</code>, <code>session</code> (the session cookie or a bearer token from <code>/auth/jwt</code>) or <code>role:&lt;name&gt;</code>.</p>
<ul>${tags.map((tag) => `<li><a href="#tag-${anchor(tag)}">${escape(tag)}</a></li>`).join('')}<li><a href="#schemas">Schemas</a></li></ul>
${tags.map((tag) => `<h2 id="tag-${anchor(tag)}">${escape(tag)}</h2>${prose(descriptions.get(tag))}\n${(byTag.get(tag) ?? []).join('\n')}`).join('\n')}
<h2 id="schemas">Schemas</h2>
${Object.entries(schemas).map(([name, schema]) => `<details id="schema-${anchor(name)}"><summary><code>${escape(name)}</code></summary><pre>${escape(JSON.stringify(schema, null, 2))}</pre></details>`).join('\n')}
</body>
</html>
`
}
