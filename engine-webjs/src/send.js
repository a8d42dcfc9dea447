// Sends one text, exactly as shared/WAWEB-CONTRACT.md "Sending a text"
// (whatsapp-web.js 1.34.7 Utils.js sendMessage/getChat): Wid → ChatModel →
// WAWebMsgKey → addAndSendMsgToChat. Evaluated with [digits, text]; resolves
// to {id} (the key's serialized form) or {error: 'not_on_whatsapp'}.
async ([digits, text]) => {
  const R = window.require;
  const wid = R('WAWebWidFactory').createWid(digits + '@c.us');
  const exists = await R('WAWebQueryExistsJob').queryWidExists(wid);
  if (!exists || !exists.wid) return { error: 'not_on_whatsapp' };
  const target = exists.wid;
  const Chat = R('WAWebCollections').Chat;
  const chat = Chat.get(target) || (await R('WAWebFindChatAction').findOrCreateLatestChat(target))?.chat;
  if (!chat) return { error: 'no_chat' };
  const MeUser = R('WAWebUserPrefsMeUser');
  const from = chat.id.isLid() ? MeUser.getMaybeMeLidUser() : MeUser.getMaybeMePnUser();
  const MsgKey = R('WAWebMsgKey');
  const key = new MsgKey({ from, to: chat.id, id: await MsgKey.newId(), selfDir: 'out' });
  const msg = {
    id: key,
    ack: 0,
    body: text,
    from,
    to: chat.id,
    local: true,
    self: 'out',
    t: Math.floor(Date.now() / 1000),
    isNewMsg: true,
    type: 'chat',
    ...R('WAWebGetEphemeralFieldsMsgActionsUtils').getEphemeralFields(chat),
  };
  const [msgPromise] = R('WAWebSendMsgChatAction').addAndSendMsgToChat(chat, msg);
  await msgPromise;
  return { id: key._serialized !== undefined ? String(key._serialized) : key.toString() };
}
