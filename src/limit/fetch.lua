-- What the group's poller shared, for the keys asked (false where nothing is).
return redis.call('MGET', unpack(KEYS))
