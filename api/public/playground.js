// The playground: ingest documents, then answer one question in full, reuse and blend mode (one after
// the other, so their times do not compete), showing each answer, its time to first token, how many
// context tokens were recomputed (highlighted in the context), and where the chunk caches came from.
'use strict';

const $ = (id) => document.getElementById(id);
const MODES = ['full', 'reuse', 'blend'];
const ingested = [];

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

async function documentsToIngest() {
  const texts = [];
  if ($('text').value.trim()) texts.push({ name: 'pasted text', text: $('text').value });
  for (const f of $('files').files) texts.push({ name: f.name, text: await f.text() });
  return texts;
}

async function waitReady(id, item) {
  for (let i = 0; i < 600; i++) {
    const s = await api('GET', `/v1/documents/${encodeURIComponent(id)}`);
    item.dataset.status = s.status;
    item.textContent = `${id}: ${s.status} (${s.progress.ready}/${s.progress.total} chunks cached)`;
    if (s.status !== 'pending') return s.status;
    await new Promise((r) => setTimeout(r, 250));
  }
  return 'pending';
}

$('ingest').addEventListener('click', async () => {
  try {
    const docs = await documentsToIngest();
    if (docs.length === 0) return say('paste a text or choose files first', true);
    for (const d of docs) {
      say(`ingesting ${d.name}…`);
      const r = await api('POST', '/v1/documents', { text: d.text });
      const item = el('li', { className: 'doc', textContent: `${r.id}: ${r.chunks} chunks` });
      item.dataset.id = r.id;
      $('docs').append(item);
      ingested.push(r.id);
      await waitReady(r.id, item);
    }
    $('text').value = '';
    $('files').value = '';
    say(`${ingested.length} document(s) ingested: ask a question`);
  } catch (err) {
    say(String(err.message || err), true);
  }
});

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
      if (ingested.length) body.documents = ingested;
      $('results').append(card(mode, await api('POST', '/v1/query', body)));
    }
    say('done: highlighted tokens were recomputed; the others came from the chunk caches');
  } catch (err) {
    say(String(err.message || err), true);
  }
});
