// The playground: the tenant's documents (ingested here or through the API), to pick which to ask over;
// then one question in full, reuse and blend mode (one after the other, so their times do not compete),
// showing each answer, its time to first token, how many context tokens were recomputed (highlighted in
// the context), and where the chunk caches came from.
'use strict';

const $ = (id) => document.getElementById(id);
const MODES = ['full', 'reuse', 'blend'];

$('key').value = localStorage.getItem('cacheblendKey') || '';
$('key').addEventListener('change', () => localStorage.setItem('cacheblendKey', $('key').value));

async function api(method, path, body) {
  const headers = { 'Content-Type': 'application/json' };
  if ($('key').value) headers.Authorization = `Bearer ${$('key').value}`;
  const res = await fetch(path, { method, headers, body: body && JSON.stringify(body) });
  const reply = await res.json().catch(() => ({}));
  if (!res.ok)
    throw new Error(reply.error ? `${reply.error.code}: ${reply.error.message}` : `HTTP ${res.status}`);
  return reply;
}

function say(text, isError = false) {
  $('status').textContent = text;
  $('status').className = isError ? 'error' : '';
}

function el(tag, props = {}, children = []) {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children);
  return e;
}

/** A readable name for a page ingest: the file's name, or the pasted text's first words. */
function firstWords(text, n = 6) {
  const words = text.trim().split(/\s+/);
  return words.slice(0, n).join(' ') + (words.length > n ? ' …' : '');
}

async function documentsToIngest() {
  const texts = [];
  if ($('text').value.trim()) texts.push({ name: firstWords($('text').value), text: $('text').value });
  for (const f of $('files').files) texts.push({ name: f.name, text: await f.text() });
  return texts;
}

/** Ids the user unticked: every other document (new ones included) is asked over. */
const unticked = new Set();

/** The tenant's documents, a page of 100 at a time (up to 1,000). */
async function listDocuments() {
  const docs = [];
  let cursor = null;
  for (let page = 0; page < 10; page++) {
    const q = cursor ? `?limit=100&cursor=${encodeURIComponent(cursor)}` : '?limit=100';
    const r = await api('GET', `/v1/documents${q}`);
    docs.push(...r.documents);
    if (!r.nextCursor) break;
    cursor = r.nextCursor;
  }
  return docs;
}

function docItem(d) {
  const name = (d.metadata && (d.metadata.name || d.metadata.title)) || d.id;
  const pick = el('input', { type: 'checkbox', className: 'pick', checked: !unticked.has(d.id) });
  pick.addEventListener('change', () => (pick.checked ? unticked.delete(d.id) : unticked.add(d.id)));
  const status = `${d.status} (${d.progress.ready}/${d.progress.total} chunks cached)`;
  const item = el('li', { className: 'doc' }, [
    el('label', {}, [
      pick,
      el('span', { className: 'name', textContent: name }),
      el('span', { className: 'id', textContent: name === d.id ? '' : d.id }),
      el('span', { className: 'state', textContent: status }),
    ]),
  ]);
  item.dataset.id = d.id;
  item.dataset.status = d.status;
  return item;
}

/** Show the documents; while any is pending, look again shortly. */
let refreshing = null;
async function refreshDocuments() {
  clearTimeout(refreshing);
  const docs = await listDocuments();
  $('docs').replaceChildren(...docs.map(docItem));
  if (docs.length === 0) $('docs').append(el('li', { className: 'empty', textContent: 'no documents yet' }));
  if (docs.some((d) => d.status === 'pending')) refreshing = setTimeout(() => void refresh(), 500);
  return docs;
}

async function refresh() {
  try {
    await refreshDocuments();
  } catch (err) {
    say(String(err.message || err), true);
  }
}

function chosenDocuments() {
  return [...document.querySelectorAll('li.doc')]
    .filter((li) => li.querySelector('input.pick').checked)
    .map((li) => li.dataset.id);
}

$('ingest').addEventListener('click', async () => {
  try {
    const docs = await documentsToIngest();
    if (docs.length === 0) return say('paste a text or choose files first', true);
    for (const d of docs) {
      say(`ingesting ${d.name}…`);
      await api('POST', '/v1/documents', { text: d.text, metadata: { name: d.name } });
    }
    $('text').value = '';
    $('files').value = '';
    await refreshDocuments();
    say(`${docs.length} document(s) ingested: ask a question`);
  } catch (err) {
    say(String(err.message || err), true);
  }
});

$('key').addEventListener('change', () => void refresh());
void refresh();

function contextView(explain) {
  const recomputed = new Set(explain.recomputed);
  let i = 0;
  return el(
    'div',
    { className: 'context' },
    explain.chunks.map((pieces) =>
      el(
        'span',
        { className: 'chunk' },
        pieces.map((p) =>
          recomputed.has(i++) ? el('mark', { textContent: p }) : document.createTextNode(p),
        ),
      ),
    ),
  );
}

function card(mode, r) {
  const hits = Object.entries(r.cache.hits).filter(([, n]) => n > 0);
  const rows = [
    ['TTFT', `${r.ttftMs.toFixed(1)} ms`],
    ['recomputed', `${r.recomputedTokens} of ${r.contextTokens} context tokens`],
    ['cache hits', hits.length ? hits.map(([t, n]) => `${t} ${n}`).join(', ') : 'none'],
    ['misses', String(r.cache.misses)],
  ];
  return el('article', { className: 'mode', id: `mode-${mode}` }, [
    el('h3', { textContent: mode + (r.ratio !== undefined ? ` (ratio ${r.ratio})` : '') }),
    el('div', { className: 'answer', textContent: r.answer }),
    el(
      'dl',
      {},
      rows.flatMap(([k, v]) => [
        el('dt', { textContent: k }),
        el('dd', { textContent: v, className: k.replace(' ', '-') }),
      ]),
    ),
    contextView(r.explain),
  ]);
}

$('ask').addEventListener('click', async () => {
  const question = $('question').value.trim();
  if (!question) return say('type a question first', true);
  $('results').replaceChildren();
  try {
    for (const mode of MODES) {
      say(`answering in ${mode} mode…`);
      const body = { question, mode, explain: true, maxTokens: Number($('maxTokens').value) || 24 };
      const documents = chosenDocuments();
      if (documents.length) body.documents = documents;
      $('results').append(card(mode, await api('POST', '/v1/query', body)));
    }
    say('done: highlighted tokens were recomputed; the others came from the chunk caches');
  } catch (err) {
    say(String(err.message || err), true);
  }
});
