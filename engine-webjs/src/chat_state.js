// Shows a chat state, as shared/WAWEB-CONTRACT.md's page offers it and
// whatsapp-web.js 1.34.7 Utils.js sendChatstate calls it: a Wid from
// WAWebWidFactory.createWid, then WAWebChatStateBridge.sendChatStateComposing
// / sendChatStateRecording / sendChatStatePaused with it. Evaluated with
// [digits, state]; resolves to true.
async ([digits, state]) => {
  const R = window.require;
  const wid = R('WAWebWidFactory').createWid(digits + '@c.us');
  const bridge = R('WAWebChatStateBridge');
  const call = {
    composing: bridge.sendChatStateComposing,
    recording: bridge.sendChatStateRecording,
    paused: bridge.sendChatStatePaused,
  }[state];
  if (!call) throw new Error('unknown chat state ' + state);
  await call.call(bridge, wid);
  return true;
}
