import socket,struct,sys,time
port=int(sys.argv[1]); total=int(sys.argv[2])<<20; size=16384
s=socket.create_connection(("127.0.0.1",port)); s.settimeout(15)
fr=struct.pack(">I",size)+b"x"*size
n=total//size
t=time.time()
try:
  s.sendall(fr*n)
  got=0; want=len(fr)*n
  while got<want:
    d=s.recv(1<<20)
    if not d: print("EOF after",got); break
    got+=len(d)
  print("ok" if got==want else "short", "%.2fs"%(time.time()-t))
except Exception as e: print("error",e,"%.2fs"%(time.time()-t))
