/** The panel's stylesheet, served as `/assets/panel.<hash>.css` (colours meet WCAG AA contrast). */
export const PANEL_STYLE = `
*,*::before,*::after{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f24;background:#f6f7f9}
a{color:#0b57b0}
a:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible,textarea:focus-visible{outline:3px solid #0b57b0;outline-offset:2px}
.skip{position:absolute;left:-9999px;top:0;background:#fff;padding:.5rem}
.skip:focus{left:.5rem}
header.top{display:flex;flex-wrap:wrap;align-items:center;gap:1rem;padding:.6rem 1.2rem;background:#1b1f24;color:#fff}
header.top a{color:#fff;text-decoration:none;padding:.2rem .4rem;border-radius:4px}
header.top a[aria-current="page"]{background:#3b4350}
header.top .brand{font-weight:700;margin-right:1rem}
header.top nav ul{display:flex;gap:.4rem;list-style:none;margin:0;padding:0}
header.top form{margin-left:auto}
main{max-width:1200px;margin:0 auto;padding:1rem 1.2rem 3rem}
h1{font-size:1.5rem;margin:.6rem 0 1rem}
h2{font-size:1.15rem;margin:1.4rem 0 .6rem}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d0d5dc}
th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid #e3e6ea;vertical-align:top}
th{background:#eef0f3;font-weight:600}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:999px;font-size:.85em;font-weight:600;border:1px solid currentColor}
.b-online,.b-completed,.b-registered{color:#0b5a2a;background:#e4f5e9}
.b-offline,.b-blocked,.b-expired{color:#4a4f57;background:#eceef1}
.b-draining,.b-queued,.b-offered,.b-accepted,.b-pending,.b-redeemed{color:#7a4100;background:#fff2dd}
.b-running{color:#0b4f9c;background:#e5f0fd}
.b-revoked,.b-failed,.b-cancelled{color:#9b1c1c;background:#fde8e8}
button,.button{font:inherit;padding:.35rem .8rem;border-radius:6px;border:1px solid #8a929c;background:#fff;color:#1b1f24;cursor:pointer;text-decoration:none;display:inline-block}
button.primary,.button.primary{background:#0b57b0;border-color:#0b57b0;color:#fff}
button.danger{background:#a61b1b;border-color:#a61b1b;color:#fff}
form.inline{display:inline}
.actions{display:flex;gap:.4rem;flex-wrap:wrap}
label{display:block;font-weight:600;margin:.7rem 0 .2rem}
input[type=text],input[type=password],input[type=number],select,textarea{font:inherit;padding:.4rem .5rem;border:1px solid #8a929c;border-radius:6px;width:100%;max-width:40rem;background:#fff;color:#1b1f24}
textarea{min-height:5rem}
.hint{color:#4a4f57;font-size:.9em;margin:.2rem 0}
.error{color:#9b1c1c;background:#fde8e8;border:1px solid #e5a3a3;padding:.6rem .8rem;border-radius:6px}
.notice{background:#e5f0fd;border:1px solid #9cc0ec;padding:.6rem .8rem;border-radius:6px}
.card{background:#fff;border:1px solid #d0d5dc;border-radius:8px;padding:1rem 1.2rem;margin:1rem 0}
.connect{display:flex;gap:.6rem;align-items:center;flex-wrap:wrap}
.connect code{background:#1b1f24;color:#fff;padding:.5rem .7rem;border-radius:6px;word-break:break-all}
.counts{display:flex;gap:.5rem;flex-wrap:wrap;list-style:none;padding:0;margin:.5rem 0 1rem}
.filters{display:flex;gap:1rem;flex-wrap:wrap;align-items:flex-end;margin-bottom:1rem}
.filters label{margin:0 0 .2rem}
.filters select,.filters input{width:12rem}
.pager{display:flex;gap:1rem;margin:1rem 0}
dl.spec{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:0}
dl.spec dt{font-weight:600}
dl.spec dd{margin:0}
pre.log{background:#111418;color:#e8eaed;padding:.8rem;border-radius:6px;max-height:32rem;overflow:auto;white-space:pre-wrap;word-break:break-all;margin:0}
.sign-in{max-width:28rem;margin:4rem auto}
`;
