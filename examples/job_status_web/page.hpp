// The one HTML page GET / serves, embedded in the binary: a button that POSTs /reports, a
// progress bar fed by an EventSource on /status/{id}, and the result or the error text.
#pragma once

#include <string_view>

namespace job_status_web {

inline constexpr std::string_view index_html = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>courier: live job status</title>
<link rel="icon" href="data:,">
<style>
  body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem; color: #1b1f24; }
  h1 { font-size: 1.5rem; }
  p.lead { color: #57606a; }
  .buttons { display: flex; gap: .75rem; margin: 1.5rem 0; }
  button { font-size: 1rem; padding: .6rem 1.1rem; border-radius: .4rem; border: 1px solid #1f6feb; background: #1f6feb; color: white; cursor: pointer; }
  button.secondary { background: white; color: #cf222e; border-color: #cf222e; }
  button:disabled { opacity: .5; cursor: default; }
  .bar { height: 1.6rem; background: #eaeef2; border-radius: .4rem; overflow: hidden; }
  .fill { height: 100%; width: 0; background: #1f6feb; transition: width .15s linear; }
  .bar[data-state="completed"] .fill { background: #1a7f37; }
  .bar[data-state="error"] .fill { background: #cf222e; }
  .meta { display: flex; justify-content: space-between; margin: .4rem 0 1rem; color: #57606a; font-size: .9rem; }
  #result { padding: .8rem 1rem; border-radius: .4rem; white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: .9rem; }
  #result.ok { background: #dafbe1; border: 1px solid #1a7f37; }
  #result.error { background: #ffebe9; border: 1px solid #cf222e; }
  #result:empty { display: none; }
  code { background: #eaeef2; padding: .1rem .3rem; border-radius: .2rem; }
</style>
</head>
<body>
<h1>Live job status</h1>
<p class="lead">The button enqueues a report job on a <code>courier::job_system</code>. Its progress
and completion events travel on the courier bus and reach this page as Server-Sent Events.</p>
<div class="buttons">
  <button id="start" type="button">Generate report</button>
  <button id="start-failing" class="secondary" type="button">Generate a failing report</button>
</div>
<div id="bar" class="bar" role="progressbar" aria-label="job progress" aria-valuemin="0" aria-valuemax="100" aria-valuenow="0" data-state="idle"><div class="fill"></div></div>
<div class="meta"><span id="job">no job yet</span><span id="percent">0 %</span></div>
<div id="status">idle</div>
<div id="result" role="status"></div>
<script>
(() => {
  const bar = document.getElementById('bar');
  const fill = bar.querySelector('.fill');
  const percentText = document.getElementById('percent');
  const jobText = document.getElementById('job');
  const statusText = document.getElementById('status');
  const result = document.getElementById('result');
  const buttons = [document.getElementById('start'), document.getElementById('start-failing')];
  let source = null;

  function setProgress(p, state) {
    const v = Math.max(0, Math.min(100, Math.round(p)));
    fill.style.width = v + '%';
    bar.setAttribute('aria-valuenow', String(v));
    bar.dataset.state = state;
    percentText.textContent = v + ' %';
  }
  function finish(kind, text) {
    if (source) { source.close(); source = null; }
    result.className = kind;
    result.textContent = text;
    buttons.forEach(b => b.disabled = false);
  }

  async function start(fail) {
    buttons.forEach(b => b.disabled = true);
    result.textContent = '';
    result.className = '';
    setProgress(0, 'running');
    statusText.textContent = 'enqueueing...';
    let job;
    try {
      const res = await fetch('/reports' + (fail ? '?fail=1' : ''), { method: 'POST' });
      job = await res.json();
      if (!res.ok) throw new Error(job.error || ('HTTP ' + res.status));
    } catch (e) {
      statusText.textContent = 'failed';
      finish('error', 'could not enqueue: ' + e.message);
      return;
    }
    jobText.textContent = 'job ' + job.id;
    statusText.textContent = 'waiting';
    source = new EventSource(job.status_url);
    source.addEventListener('progress', ev => {
      const d = JSON.parse(ev.data);
      setProgress(d.percent, 'running');
      statusText.textContent = d.state + (d.message ? ': ' + d.message : '');
    });
    source.addEventListener('done', ev => {
      const d = JSON.parse(ev.data);
      setProgress(100, 'completed');
      statusText.textContent = 'completed';
      finish('ok', 'Result: ' + (d.result && d.result.summary ? d.result.summary : JSON.stringify(d.result)));
    });
    source.addEventListener('error', ev => {
      if (ev.data) {  // the server's `error` event: the job failed
        const d = JSON.parse(ev.data);
        bar.dataset.state = 'error';
        statusText.textContent = d.state;
        finish('error', 'Job failed: ' + d.error);
      } else if (source && source.readyState === EventSource.CLOSED) {  // the connection itself
        statusText.textContent = 'connection lost';
        finish('error', 'Lost the connection to the server.');
      }
    });
  }
  buttons[0].addEventListener('click', () => start(false));
  buttons[1].addEventListener('click', () => start(true));
})();
</script>
</body>
</html>
)HTML";

}  // namespace job_status_web
